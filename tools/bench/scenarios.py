"""The scenario table: what `make bench` measures, and how one run is measured.

To add a scenario, append a Scenario to SCENARIOS. Fields:
  name          key for BENCH_SCENARIOS (a name, a prefix before "-", or a glob)
  title         heading of its table
  workers       workers for every proxy (nginx workers, HAProxy threads, sluice workers)
  description   one or two sentences for docs/benchmarks.md
  headers       extra request headers wrk sends
  backends      how many backend nginx servers the proxies balance over
  backend_ports ports each backend nginx listens on (one server block, a `listen` line
                each); the proxies balance round robin over every port
  options       passed to the config builders in servers.py (see its docstring), and
                read by the measure function
  measure       function(RunContext) -> dict of metrics; default measure_wrk
  columns       the metrics shown in its table (keys of that dict)
  conns         client connections (default BENCH_CONNS)
  default       run when BENCH_SCENARIOS is not set
  split_clients one wrk per CPU the workers run on, each pinned there, connections
                shared out (SYNs then come from every CPU, as a NIC's RSS spreads them)
  variants      the table's rows: Variant(key, proxy, label, options). Empty: one row
                per proxy of BENCH_PROXIES. A variant's options are laid over the
                scenario's. Variants of a proxy left out by BENCH_PROXIES are skipped.
  ratios        ratio rows: (numerator key, denominator key, label)
  bars          functions(result) -> list of (text, verdict): the acceptance bars,
                verdict True (met), False (not met) or None (not measured)
  notes         function(result) -> list of extra lines under the table
"""
import asyncio
import fnmatch
import math
import os
import re
import subprocess
import signal
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import connload
import idleconn
from loadgen import (listener_queues, run_wrk, run_wrk_split, sluice_workers, spawn_wrk,
                     steer_stats, stop_wrk, stub_counters, STEER_REASONS)
from procs import cpu_delta_seconds, cpu_ticks, http_get, rss_kib, unix_http


class RunError(Exception):
    """A run that started but could not be measured (crash, wrk failure...)."""


@dataclass
class Settings:
    duration: int = 10
    repeat: int = 3
    conns: int = 50
    threads: int = 1
    warmup: int = 1
    quick: bool = False


@dataclass
class RunContext:
    lab: object          # servers.Lab
    settings: Settings
    scenario: "Scenario"
    proxy: str           # "sluice", "nginx", "haproxy"
    child: object        # procs.Child of the proxy (child.meta: admin socket, pin path)
    port: int            # where the proxy listens
    backends: list       # servers.Backend
    variant: "Variant" = None

    def option(self, key, default=None):
        """A variant's option, else the scenario's, else default."""
        if self.variant is not None and key in self.variant.options:
            return self.variant.options[key]
        return self.scenario.options.get(key, default)


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    fmt: str             # format for the value
    better: str          # "higher" or "lower": how to read the ratio


WRK_COLUMNS = (
    Column("rps", "rps", "{:.0f}", "higher"),
    Column("p50_ms", "p50 ms", "{:.2f}", "lower"),
    Column("p99_ms", "p99 ms", "{:.2f}", "lower"),
    Column("cpu_us_per_req", "CPU µs/req", "{:.1f}", "lower"),
    Column("rss_mib", "RSS MiB", "{:.1f}", "lower"),
    Column("upstream_per_1k", "upstream conns/1k req", "{:.2f}", "lower"),
)


def client_cpus(workers):
    """The CPUs clients run on when spread: those the workers are pinned to (sluice
    pins worker i to the i-th CPU), at least one."""
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[:max(1, min(workers, len(cpus)))]


def _max_min(values):
    lo, hi = min(values), max(values)
    if hi == 0:
        return None
    return math.inf if lo == 0 else hi / lo


def _worker_deltas(before, after):
    """Per-worker deltas of /workers counters: {id: {accepted, requests, upstream_new,
    upstream_reused}}."""
    b = {w["id"]: w for w in before}
    out = {}
    for w in after:
        w0 = b.get(w["id"], {})
        out[w["id"]] = {k: w.get(k, 0) - w0.get(k, 0)
                        for k in ("accepted", "requests", "upstream_new", "upstream_reused",
                                  "tls_handshakes_full", "tls_handshakes_resumed")}
    return out


def _steer_delta(before, after):
    if before is None or after is None:
        return None
    return {k: after.get(k, 0) - before.get(k, 0) for k in STEER_REASONS}


def steering_state(child):
    """"on" or "off" from sluiced's log (it says which at start, and why when off)."""
    try:
        with open(child.log_path, errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    if 'msg="steering on"' in text:
        return "on"
    if 'msg="steering off' in text:
        return "off"
    return None


def check_steering(ctx):
    """For sluice variants that ask for steering: make sure it runs (auto falls back
    silently to no steering, which would make the "on" row a second "off" row)."""
    want = ctx.option("sluice_steering")
    if ctx.proxy != "sluice" or not want:
        return None
    state = steering_state(ctx.child)
    if want in ("auto", "required") and state != "on":
        reason = [ln for ln in ctx.child.log_tail(40).splitlines() if "steering" in ln]
        raise RunError("steering asked for (%s) but not running: %s"
                       % (want, reason[-1] if reason else "no steering line in the log"))
    return state


def measure_wrk(ctx):
    """One wrk load through the proxy; CPU, RSS and upstream connections around it.
    With sluice's admin API: per-worker accepted/requests (and their max/min), sluice's
    own count of upstream connections; with steering: the steering reasons."""
    s, sc = ctx.settings, ctx.scenario
    conns = sc.conns or s.conns
    headers = list(sc.headers)
    check_steering(ctx)
    scheme = "https" if ctx.option("tls") else "http"
    if sc.split_clients:
        cpus = client_cpus(sc.workers)

        def load(seconds):
            return run_wrk_split(ctx.lab.wrk, ctx.port, seconds, conns, s.threads, headers,
                                 cpus, path=path, scheme=scheme)
    else:
        def load(seconds):
            return run_wrk(ctx.lab.wrk, ctx.port, seconds, conns, s.threads, headers,
                           path=path, scheme=scheme)
    path = ctx.option("path", "/")
    if ctx.option("cache"):
        # the object in the proxy's cache before anything is measured (BENCH_WARMUP=0
        # would otherwise measure one miss among the hits)
        status, _ = http_get(ctx.port, path)
        if status != 200:
            raise RunError("GET %s through the proxy answered %d" % (path, status))
        time.sleep(0.2)
    if s.warmup > 0:
        load(s.warmup)

    admin = ctx.child.meta.get("admin")
    pin = ctx.child.meta.get("pin_path")
    backend_pids = [p for b in ctx.backends for p in b.child.pids()]
    stub0 = [stub_counters(b.status_port) for b in ctx.backends]
    workers0 = sluice_workers(admin) if admin else None
    steer0 = steer_stats(pin)
    bcpu0 = cpu_ticks(backend_pids)
    cpu0 = cpu_ticks(ctx.child.pids())

    wrk, raw = load(s.duration)
    time.sleep(0.2)  # let the proxy finish closing the client connections

    if not ctx.child.alive():
        raise RunError("%s during the load" % ctx.child.exit_reason())
    pids = ctx.child.pids()
    cpu1 = cpu_ticks(pids)
    bcpu1 = cpu_ticks(backend_pids)
    rss = rss_kib(pids)
    stub1 = [stub_counters(b.status_port) for b in ctx.backends]
    workers1 = sluice_workers(admin) if admin else None
    steer1 = steer_stats(pin)

    n = wrk["requests"]
    if n == 0:
        raise RunError("no request completed (wrk: %s)" % raw.strip().replace("\n", " ")[-200:])
    # each stub_status GET is one connection and one request, counted in the second
    # reading; the backend's own requests check that every request went through
    upstream = sum(s1[0] - s0[0] - 1 for s0, s1 in zip(stub0, stub1))
    backend_requests = sum(s1[1] - s0[1] - 1 for s0, s1 in zip(stub0, stub1))
    m = {
        "requests": n,
        "conns": conns,
        "rps": wrk["rps"],
        "p50_ms": wrk["p50_ms"],
        "p75_ms": wrk["p75_ms"],
        "p90_ms": wrk["p90_ms"],
        "p99_ms": wrk["p99_ms"],
        "cpu_us_per_req": cpu_delta_seconds(cpu0, cpu1) * 1e6 / n,
        "backend_cpu_us_per_req": cpu_delta_seconds(bcpu0, bcpu1) * 1e6 / n,
        "rss_mib": rss / 1024.0,
        "upstream_conns": upstream,
        "upstream_per_1k": upstream * 1000.0 / n,
        "reuse_pct": (100.0 * (1 - upstream / backend_requests)
                      if backend_requests > 0 else None),
        "backend_requests": backend_requests,
        "processes": len(pids),
        "errors": wrk["errors"],
        "non2xx": wrk["non2xx"],
    }
    if workers0 is not None:
        d = _worker_deltas(workers0, workers1)
        ids = sorted(d)
        for i in ids:
            m["accepted_w%d" % i] = d[i]["accepted"]
            m["requests_w%d" % i] = d[i]["requests"]
        m["accepted_maxmin"] = _max_min([d[i]["accepted"] for i in ids])
        m["requests_maxmin"] = _max_min([d[i]["requests"] for i in ids])
        m["sluice_upstream_new"] = sum(d[i]["upstream_new"] for i in ids)
        m["sluice_upstream_reused"] = sum(d[i]["upstream_reused"] for i in ids)
        full = sum(d[i]["tls_handshakes_full"] for i in ids)
        resumed = sum(d[i]["tls_handshakes_resumed"] for i in ids)
        if full + resumed:
            m["tls_full"], m["tls_resumed"] = full, resumed
            m["resumed_pct"] = 100.0 * resumed / (full + resumed)
            for i in ids:
                m["tls_resumed_w%d" % i] = d[i]["tls_handshakes_resumed"]
    steer = _steer_delta(steer0, steer1)
    if steer is not None:
        m["steer"] = steer
        total = sum(steer.values())
        m["own_cpu_pct"] = 100.0 * steer["own_cpu"] / total if total else None
    return m


# ---------------------------------------------------------------- TLS handshakes

def _s_time(port, seconds, cpu):
    return subprocess.Popen(["openssl", "s_time", "-connect", "127.0.0.1:%d" % port, "-new",
                             "-time", str(seconds)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})))


def measure_handshakes(ctx):
    """Full handshakes: two `openssl s_time -new` clients in parallel (one pinned to each
    CPU), each connecting, handshaking and closing as fast as it can; the proxy's CPU
    over the load divided by the handshakes done. With sluice's admin API, its own count
    of full handshakes checks that none was resumed."""
    s = ctx.settings
    cpus = sorted(os.sched_getaffinity(0))[:2] or [0]
    if s.warmup > 0:
        for p in [_s_time(ctx.port, 1, c) for c in cpus]:
            p.communicate(timeout=60)
    admin = ctx.child.meta.get("admin")
    w0 = sluice_workers(admin) if admin else None
    cpu0 = cpu_ticks(ctx.child.pids())
    t0 = time.monotonic()
    procs = [_s_time(ctx.port, s.duration, c) for c in cpus]
    n = 0
    for p in procs:
        out, _ = p.communicate(timeout=s.duration + 60)
        m = re.search(r"(\d+) connections in [\d.]+ real seconds", out)
        if p.returncode != 0 or not m:
            raise RunError("openssl s_time failed: %s" % out.strip()[-300:])
        n += int(m.group(1))
    elapsed = time.monotonic() - t0
    time.sleep(0.2)
    if not ctx.child.alive():
        raise RunError("%s during the load" % ctx.child.exit_reason())
    pids = ctx.child.pids()
    cpu1 = cpu_ticks(pids)
    if n == 0:
        raise RunError("no handshake completed")
    m = {"handshakes": n, "hs_per_s": n / elapsed,
         "cpu_us_per_hs": cpu_delta_seconds(cpu0, cpu1) * 1e6 / n,
         "rss_mib": rss_kib(pids) / 1024.0}
    if w0 is not None:
        d = _worker_deltas(w0, sluice_workers(admin))
        m["tls_full"] = sum(v["tls_handshakes_full"] for v in d.values())
        m["tls_resumed"] = sum(v["tls_handshakes_resumed"] for v in d.values())
    return m


HS_COLUMNS = (
    Column("hs_per_s", "handshakes/s", "{:.0f}", "higher"),
    Column("cpu_us_per_hs", "CPU µs/handshake", "{:.0f}", "lower"),
    Column("rss_mib", "RSS MiB", "{:.1f}", "lower"),
)

TLS_WRK_COLUMNS = WRK_COLUMNS + (Column("resumed_pct", "resumed % (sluice)", "{:.1f}",
                                        "higher"),)


def _best_other(result, metric):
    vals = [v for v in (median_of(result, "nginx", metric), median_of(result, "haproxy", metric))
            if v is not None]
    return min(vals) if vals else None


def _tls_bar(metric, limit, what):
    def bar(result):
        mine, best = median_of(result, "sluice", metric), _best_other(result, metric)
        ratio = mine / best if mine is not None and best else None
        return [("%s: sluice ≤ %.2fx the better of nginx and HAProxy: %s vs %s (ratio %s)"
                 % (what, limit, _fmt(mine, "{:.1f}"), _fmt(best, "{:.1f}"), _fmt(ratio)),
                 None if ratio is None else ratio <= limit)]
    return bar


def resumed_bar(result):
    """Every reconnect resumes: the only full handshakes are the first one of each wrk
    connection (it has no session yet)."""
    runs = [r["metrics"] for r in result["runs"].get("sluice", []) if r["ok"]]
    conns = result["scenario"].conns or None
    extra = []
    for m in runs:
        if m.get("tls_full") is None:
            continue
        slots = conns or m.get("conns") or 50
        extra.append(max(0, m["tls_full"] - slots))
    return [("sluice resumes every reconnect, whichever worker takes it: full handshakes "
             "beyond one per client connection: worst run %s"
             % (_fmt(max(extra), "{:.0f}") if extra else "–"),
             None if not extra else max(extra) == 0)]


def tls_notes(result):
    out = []
    for r in result["runs"].get("sluice", []):
        if r["ok"] and r["metrics"].get("tls_full") is not None:
            m = r["metrics"]
            per = ", ".join("w%s %d" % (k[len("tls_resumed_w"):], v)
                            for k, v in sorted(m.items()) if k.startswith("tls_resumed_w"))
            out.append("sluice: %d full and %d resumed handshakes%s"
                       % (m["tls_full"], m["tls_resumed"],
                          " (resumed by worker: %s)" % per if per else ""))
    return out


# ---------------------------------------------------------------- stalled worker

def _sleep_until(t):
    d = t - time.monotonic()
    if d > 0:
        time.sleep(d)


def _percentile(sorted_vals, q):
    if not sorted_vals:
        return None
    return sorted_vals[min(len(sorted_vals) - 1, int(math.ceil(q * len(sorted_vals))) - 1)]


def _nginx_worker_pid(child):
    """The first nginx worker (the master's lowest-numbered child)."""
    workers = [p for p in child.pids() if p != child.pid]
    if not workers:
        raise RunError("no nginx worker process to stop")
    return min(workers)


def measure_stall(ctx):
    """New connections (`Connection: close`) at a steady rate from every CPU, for
    lead + stall + tail seconds; `stall_ms` after the lead, one worker stops for
    stall_ms: sluice's worker 0 through the admin API (POST /debug/stall), nginx's
    first worker by SIGSTOP/SIGCONT.

    Measured: connect-to-first-byte latency of every connection (connload.py); the
    accept queue of each listening socket (ss) just before the stall, once the
    stalled worker's heartbeat is stale (stall start + bpf.stall_ms + 60 ms) and just
    before the stall ends: the stalled worker's queue (the one that grew) holds exactly
    the connections that landed on it and wait for it. sluice's /workers (worker 0's
    accepted, before the stall and right after it) and steering reasons, as a check."""
    o = ctx.scenario.options
    stall_s = o["stall_ms"] / 1000.0
    lead, tail = o["lead_s"], o["tail_s"]
    rate = o["rate_per_cpu"]
    cpus = client_cpus(ctx.scenario.workers)
    heartbeat_stale_s = ctx.option("sluice_stall_ms", 200) / 1000.0
    sluice = ctx.proxy == "sluice"
    admin = ctx.child.meta.get("admin")
    pin = ctx.child.meta.get("pin_path")
    steering = check_steering(ctx)
    if sluice and not admin:
        raise RunError("the stall scenario needs sluice's admin API (sluice_admin)")

    # unmeasured: a short load of the same kind, so that pools and caches are warm
    warm = connload.run(ctx.port, rate, cpus, time.monotonic() + 0.05, 0.5)
    connload.collect(warm, 30)

    start = time.monotonic() + 0.3
    duration = lead + stall_s + tail
    procs = connload.run(ctx.port, rate, cpus, start, duration, timeout=stall_s + 8)
    stopped_pid = None
    try:
        _sleep_until(start + lead)
        w_before = sluice_workers(admin) if admin else None
        steer0 = steer_stats(pin)
        q0 = listener_queues(ctx.port)
        t_stall = time.monotonic()
        if sluice:
            status, body = unix_http(admin, "POST", "/debug/stall?worker=0&ms=%d"
                                     % o["stall_ms"])
            if status != 200:
                raise RunError("POST /debug/stall answered HTTP %d: %s"
                               % (status, body[:200].decode(errors="replace")))
        else:
            stopped_pid = _nginx_worker_pid(ctx.child)
            os.kill(stopped_pid, signal.SIGSTOP)
        _sleep_until(t_stall + heartbeat_stale_s + 0.06)
        t_stale = time.monotonic()
        q_stale = listener_queues(ctx.port)
        _sleep_until(t_stall + stall_s - 0.05)
        t_end = time.monotonic()
        q_end = listener_queues(ctx.port)
        if stopped_pid:
            _sleep_until(t_stall + stall_s)
            os.kill(stopped_pid, signal.SIGCONT)
            stopped_pid = None
        _sleep_until(t_stall + stall_s + 0.1)
        w_after = sluice_workers(admin) if admin else None
        steer1 = steer_stats(pin)
    finally:
        if stopped_pid:
            try:
                os.kill(stopped_pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    records = connload.collect(procs, duration + stall_s + 30)
    if not ctx.child.alive():
        raise RunError("%s during the load" % ctx.child.exit_reason())
    if not records:
        raise RunError("the connection load made no connection")

    lat = sorted((r[1] - r[0]) if (r[2] == 200 and r[1] is not None) else math.inf
                 for r in records)
    n = len(records)
    failed = sum(1 for r in records if r[2] != 200)
    slow = sum(1 for x in lat if x > 1.0)
    in_stall = sum(1 for r in records if t_stall <= r[0] < t_end)
    after_stale = sum(1 for r in records if t_stale <= r[0] < t_end)
    # the stalled worker's listening socket: the one whose queue grew
    ino = max(q_end, key=lambda k: (q_end[k] - q0.get(k, 0), k)) if q_end else None
    landed = q_end[ino] - q0.get(ino, 0) if ino is not None else None
    landed_after = q_end[ino] - q_stale.get(ino, 0) if ino is not None else None
    m = {
        "conns": n,
        "failed": failed,
        "errors_sample": sorted({r[3] for r in records if r[3]})[:3],
        "p50_ms": _percentile(lat, 0.50) * 1e3,
        "p99_ms": _percentile(lat, 0.99) * 1e3,
        "p999_ms": _percentile(lat, 0.999) * 1e3,
        "slow_pct": 100.0 * slow / n,
        "in_stall": in_stall,
        "landed": landed,
        "landed_pct": 100.0 * landed / in_stall if in_stall and landed is not None else None,
        "after_stale": after_stale,
        "landed_after_stale": landed_after,
        "queues": {"before": q0, "stale": q_stale, "end": q_end},
        "timing_s": {"stale": t_stale - t_stall, "end": t_end - t_stall},
        "steering": steering,
    }
    if m["p99_ms"] == math.inf:
        m["p99_ms"] = None
    if m["p50_ms"] == math.inf:
        m["p50_ms"] = None
    if m["p999_ms"] == math.inf:
        m["p999_ms"] = None
    if w_before is not None and w_after is not None:
        d = _worker_deltas(w_before, w_after)
        m["w0_accepted_stall"] = d.get(0, {}).get("accepted")
    steer = _steer_delta(steer0, steer1)
    if steer is not None:
        m["steer"] = steer
        m["p2c_stalled"] = steer["p2c_stalled"]
    return m


# ---------------------------------------------------------------- hot swap

HOTSWAP_SWAPS = 100
HOTSWAP_RELOADS = 20


def _unix_put(path, target, body, timeout=5.0):
    """(status, body) of one PUT with a JSON body on a Unix-socket HTTP server."""
    import socket as _socket
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(b"PUT %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                  % (target.encode(), len(body)) + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.") else 0, rest


def _haproxy_cmd(path, cmd, timeout=5.0):
    import socket as _socket
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(cmd.encode() + b"\n")
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    return out.decode(errors="replace")


def _swapper(ctx, ports, duration, errors, counts):
    """The changes, spread evenly over `duration`: sluice 100 PUT /upstreams/backend
    alternating the two backend ports plus 20 SIGHUP reloads; HAProxy 100 `set server
    be/s0 addr 127.0.0.1 port P` on its runtime API; nginx 100 config rewrites + SIGHUP
    (its only way to change an upstream)."""
    proxy = ctx.proxy
    t0 = time.monotonic()
    step = duration / (HOTSWAP_SWAPS + 1)
    reload_every = HOTSWAP_SWAPS // HOTSWAP_RELOADS
    for i in range(HOTSWAP_SWAPS):
        _sleep_until(t0 + step * (i + 1))
        port = ports[(i + 1) % 2]
        try:
            if proxy == "sluice":
                body = ('{"servers": [{"address": "127.0.0.1:%d"}]}' % port).encode()
                st, rb = _unix_put(ctx.child.meta["admin"], "/upstreams/backend", body)
                if st != 200:
                    errors.append("PUT: HTTP %d %s" % (st, rb[:100]))
                counts["swaps"] += 1
                if (i + 1) % reload_every == 0:
                    os.kill(ctx.child.pid, signal.SIGHUP)
                    counts["reloads"] += 1
            elif proxy == "haproxy":
                out = _haproxy_cmd(ctx.child.meta["haproxy_admin"],
                                   "set server be/s0 addr 127.0.0.1 port %d" % port)
                if "changed" not in out and "no need to change" not in out:
                    errors.append("set server: %s" % out.strip()[:100])
                counts["swaps"] += 1
            else:
                conf = ctx.child.meta["conf"]
                with open(conf) as f:
                    text = f.read()
                text = text.replace("server 127.0.0.1:%d;" % ports[i % 2],
                                    "server 127.0.0.1:%d;" % port)
                with open(conf + ".tmp", "w") as f:
                    f.write(text)
                os.replace(conf + ".tmp", conf)
                os.kill(ctx.child.pid, signal.SIGHUP)
                counts["swaps"] += 1
                counts["reloads"] += 1
        except OSError as e:
            errors.append("%s: %s" % (proxy, e))


def measure_hotswap(ctx):
    """Keep-alive wrk through 2 workers, twice: once quiet, once while the upstream's
    server moves between the backend's two ports 100 times (and, for sluice, the config
    is reloaded 20 times by SIGHUP). Both loads count non-2xx and socket errors; p99 and
    CPU per request side by side."""
    import threading
    s = ctx.settings
    conns = ctx.scenario.conns or s.conns
    cpus = client_cpus(ctx.scenario.workers)
    ports = ctx.backends[0].ports[:2]

    def load(seconds):
        return run_wrk_split(ctx.lab.wrk, ctx.port, seconds, conns, s.threads, (), cpus)
    if s.warmup > 0:
        load(s.warmup)
    pids = ctx.child.pids()
    cpu0 = cpu_ticks(pids)
    quiet, _ = load(s.duration)
    cpu1 = cpu_ticks(ctx.child.pids())
    errors, counts = [], {"swaps": 0, "reloads": 0}
    t = threading.Thread(target=_swapper, args=(ctx, ports, s.duration, errors, counts))
    t.start()
    busy, raw = load(s.duration)
    t.join(30)
    cpu2 = cpu_ticks(ctx.child.pids())
    if not ctx.child.alive():
        raise RunError("%s during the load" % ctx.child.exit_reason())
    if errors:
        raise RunError("swaps failed: %s" % "; ".join(errors[:3]))
    if not busy["requests"] or not quiet["requests"]:
        raise RunError("no request completed (wrk: %s)" % raw.strip()[-200:])
    # nginx's SIGHUP starts new workers: the old ones' CPU is lost from the tally, so
    # its CPU/request while swapping is a lower bound
    return {
        "rps_quiet": quiet["rps"], "rps_swap": busy["rps"],
        "p99_quiet_ms": quiet["p99_ms"], "p99_swap_ms": busy["p99_ms"],
        "p99_ratio": busy["p99_ms"] / quiet["p99_ms"] if quiet["p99_ms"] else None,
        "cpu_quiet_us": cpu_delta_seconds(cpu0, cpu1) * 1e6 / quiet["requests"],
        "cpu_swap_us": cpu_delta_seconds(cpu1, cpu2) * 1e6 / busy["requests"],
        "non2xx": quiet["non2xx"] + busy["non2xx"],
        "errors": {k: quiet["errors"][k] + busy["errors"][k] for k in quiet["errors"]},
        "socket_errors": sum(quiet["errors"].values()) + sum(busy["errors"].values()),
        "swaps": counts["swaps"], "reloads": counts["reloads"],
    }


HOTSWAP_COLUMNS = (
    Column("rps_quiet", "rps quiet", "{:.0f}", "higher"),
    Column("rps_swap", "rps swapping", "{:.0f}", "higher"),
    Column("p99_quiet_ms", "p99 ms quiet", "{:.2f}", "lower"),
    Column("p99_swap_ms", "p99 ms swapping", "{:.2f}", "lower"),
    Column("p99_ratio", "p99 swapping/quiet", "{:.2f}", "lower"),
    Column("cpu_quiet_us", "CPU µs/req quiet", "{:.1f}", "lower"),
    Column("cpu_swap_us", "CPU µs/req swapping", "{:.1f}", "lower"),
    Column("non2xx", "non-2xx", "{:.0f}", "lower"),
    Column("socket_errors", "socket errors", "{:.0f}", "lower"),
    Column("swaps", "swaps", "{:.0f}", "higher"),
    Column("reloads", "reloads", "{:.0f}", "higher"),
)


# ---------------------------------------------------------------- binary upgrade

UPGRADES = 10
UPGRADE_TIMEOUT_S = 30.0


def _gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


def _wait(pred, what):
    deadline = time.monotonic() + UPGRADE_TIMEOUT_S
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise RunError("upgrade: %s within %.0f s" % (what, UPGRADE_TIMEOUT_S))


def _upgrade_once(ctx, state):
    """One binary upgrade, each proxy its own way, until the old process is gone:
    sluice SIGUSR2 (sockets handed over by SCM_RIGHTS, the old one drains); HAProxy a
    new process with -x (fetch the listeners over the stats socket, expose-fd
    listeners) -sf OLD."""
    from procs import Child, unix_json
    old = state["pid"]
    if ctx.proxy == "sluice":
        os.kill(old, signal.SIGUSR2)
        admin = ctx.child.meta["admin"]

        def new_pid():
            try:
                j = unix_json(admin, "GET", "/status", timeout=2.0)
            except (OSError, ValueError, RuntimeError):
                return 0  # between the two daemons' sockets
            return j.get("pid") if j.get("pid") != old else 0
        state["pid"] = _wait(new_pid, "no new sluiced on the admin socket")
    elif ctx.proxy == "haproxy":
        conf, sock = ctx.child.meta["haproxy_conf"], ctx.child.meta["haproxy_admin"]
        n = len(state["extra"]) + 1
        child = Child("%s-up%d" % (ctx.child.name, n),
                      [ctx.lab.haproxy, "-db", "-f", conf, "-x", sock, "-sf", str(old)],
                      ctx.lab.tmp, stop_signal=signal.SIGTERM)
        state["extra"].append(child)
        state["pid"] = child.pid
    else:
        raise RunError("no binary upgrade for %s" % ctx.proxy)
    _wait(lambda: _gone(old), "old process %d still there" % old)


def measure_upgrade(ctx):
    """wrk through 2 workers for the run's duration while the proxy's binary is upgraded
    UPGRADES times, evenly spread; keep-alive or Connection: close by the scenario.
    Counts non-2xx and socket errors (the bar is none of either) and the upgrades done."""
    import threading
    s, sc = ctx.settings, ctx.scenario
    conns = sc.conns or s.conns
    cpus = client_cpus(sc.workers)
    state = {"pid": ctx.child.pid, "extra": [], "done": 0, "error": None,
             "took": []}

    def upgrader():
        t0 = time.monotonic()
        step = s.duration / (UPGRADES + 1)
        try:
            for i in range(UPGRADES):
                _sleep_until(t0 + step * (i + 1))
                u0 = time.monotonic()
                _upgrade_once(ctx, state)
                state["took"].append(time.monotonic() - u0)
                state["done"] += 1
        except (RunError, OSError) as e:
            state["error"] = str(e)
    try:
        if s.warmup > 0:
            run_wrk_split(ctx.lab.wrk, ctx.port, s.warmup, conns, s.threads, sc.headers, cpus)
        t = threading.Thread(target=upgrader)
        t.start()
        wrk, raw = run_wrk_split(ctx.lab.wrk, ctx.port, s.duration, conns, s.threads,
                                 sc.headers, cpus)
        t.join(UPGRADE_TIMEOUT_S * 2)
        if state["error"]:
            raise RunError(state["error"])
        if _gone(state["pid"]):
            raise RunError("no %s process left serving after the upgrades" % ctx.proxy)
        if not wrk["requests"]:
            raise RunError("no request completed (wrk: %s)" % raw.strip()[-200:])
        took = sorted(state["took"])
        return {
            "rps": wrk["rps"], "p99_ms": wrk["p99_ms"],
            "non2xx": wrk["non2xx"], "errors": wrk["errors"],
            "socket_errors": sum(wrk["errors"].values()),
            "upgrades": state["done"],
            "upgrade_s": took[len(took) // 2] if took else None,
        }
    finally:
        for c in state["extra"]:
            c.stop()
        if not _gone(state["pid"]) and state["pid"] != ctx.child.pid:
            try:  # sluice's new processes are in the first one's process group
                os.killpg(ctx.child.pid, signal.SIGTERM)
            except OSError:
                pass


UPGRADE_COLUMNS = (
    Column("rps", "rps", "{:.0f}", "higher"),
    Column("p99_ms", "p99 ms", "{:.2f}", "lower"),
    Column("non2xx", "non-2xx", "{:.0f}", "lower"),
    Column("socket_errors", "socket errors", "{:.0f}", "lower"),
    Column("upgrades", "upgrades", "{:.0f}", "higher"),
    Column("upgrade_s", "s per upgrade (median)", "{:.2f}", "lower"),
)


def _upgrade_scenario(name, title, headers, what):
    return Scenario(
        name, title, 2,
        "wrk %s (50 connections, one wrk per CPU) through 2 workers for the run's duration "
        "while the proxy's binary is upgraded %d times, evenly spread, each until the old "
        "process is gone: sluice `SIGUSR2` (listening sockets handed over with "
        "SCM_RIGHTS, the old one drains), HAProxy a new process with `-x STATS_SOCKET "
        "-sf OLD` (`expose-fd listeners`). nginx is not in it: its `USR2` is ignored "
        "when its master runs in the foreground under a supervisor, as here (it upgrades "
        "only once its parent changed, i.e. daemonized). Bar: no non-2xx, no socket "
        "errors." % (what, UPGRADES),
        headers=headers, split_clients=True, measure=measure_upgrade,
        columns=UPGRADE_COLUMNS,
        variants=(Variant("sluice", "sluice", "sluice (SIGUSR2)", {"sluice_admin": True}),
                  Variant("haproxy", "haproxy", "HAProxy (-x -sf)",
                          {"haproxy_admin": True, "haproxy_expose_fd": True})),
        ratios=(("sluice", "haproxy", "sluice/HAProxy"),),
        default=False)


# ---------------------------------------------------------------- idle memory

IDLE_CONNS = 5000
IDLE_SETTLE_S = 1.0


def _fd_room(ctx, n):
    """RunError unless the load generator (this process) and the proxy can all hold n
    client connections more (plus their upstream pool and some spare)."""
    from servers import NGINX_KEEPALIVE, SLUICE_KEEPALIVE, haproxy_maxconn, \
        nginx_worker_connections
    nofile = ctx.lab.nofile
    need = n + max(NGINX_KEEPALIVE, SLUICE_KEEPALIVE) + 100
    # sluice: limits.max_connections as sluiced derives it (docs/configuration.md)
    sluice = (nofile - 64 - ctx.scenario.workers * 3) // 2
    room = {"sluice": sluice, "nginx": nginx_worker_connections(nofile),
            "haproxy": haproxy_maxconn(nofile)}[ctx.proxy]
    if nofile < need or room < need:
        raise RunError("%d connections need an fd limit of at least %d for the client and "
                       "%d connections for %s (fd limit %d; sluice max_connections %d, "
                       "nginx worker_connections %d, HAProxy maxconn %d)"
                       % (n, need, need, ctx.proxy, nofile, sluice,
                          nginx_worker_connections(nofile), haproxy_maxconn(nofile)))


def measure_idle(ctx):
    """Idle keep-alive clients: the proxy's VmRSS (summed over its processes) just after
    it started and answered its readiness GET, then after N client connections have
    each had one keep-alive request answered and have sat idle IDLE_SETTLE_S, then
    again IDLE_SETTLE_S after they are all closed. Bytes per idle connection =
    (idle - before) / N."""
    n = ctx.scenario.conns or IDLE_CONNS
    _fd_room(ctx, n)
    pids0 = ctx.child.pids()
    before = rss_kib(pids0)
    socks, open_s = idleconn.open_idle(ctx.port, n)
    try:
        time.sleep(IDLE_SETTLE_S)  # let the proxy finish with the last responses
        if not ctx.child.alive():
            raise RunError("%s with the connections open" % ctx.child.exit_reason())
        pids = ctx.child.pids()
        idle = rss_kib(pids)
        left = idleconn.still_open(socks)
    finally:
        idleconn.close_all(socks)
    if left != n:
        raise RunError("the proxy closed %d of the %d idle connections" % (n - left, n))
    time.sleep(IDLE_SETTLE_S)
    closed = rss_kib(ctx.child.pids())
    return {
        "conns": n,
        "open_s": open_s,
        "rss_before_kib": before,
        "rss_idle_kib": idle,
        "rss_closed_kib": closed,
        "bytes_per_conn": (idle - before) * 1024.0 / n,
        "kept_kib": closed - before,
        "processes": len(pids),
    }


IDLE_COLUMNS = (
    Column("bytes_per_conn", "bytes per idle conn", "{:.0f}", "lower"),
    Column("rss_before_kib", "RSS before KiB", "{:.0f}", "lower"),
    Column("rss_idle_kib", "RSS with conns idle KiB", "{:.0f}", "lower"),
    Column("rss_closed_kib", "RSS after close KiB", "{:.0f}", "lower"),
)

IDLE_BAR = 0.7  # issue 9, "Memory bar": at most 0.7× nginx's in the same run


def idle_bar(result):
    s = median_of(result, "sluice", "bytes_per_conn")
    ng = median_of(result, "nginx", "bytes_per_conn")
    ratio = s / ng if s is not None and ng else None
    return [("RSS per idle keep-alive client connection at most %.1f× nginx's: sluice %s B, "
             "nginx %s B (%s×)" % (IDLE_BAR, _fmt(s, "{:.0f}"), _fmt(ng, "{:.0f}"),
                                   _fmt(ratio)),
             None if ratio is None else ratio <= IDLE_BAR)]


def idle_notes(result):
    out = []
    for v in result["variants"]:
        ok = [r["metrics"] for r in result["runs"].get(v.key, []) if r["ok"]]
        if ok:
            out.append("%s per run: bytes per idle conn %s; opened in %s s; kept after "
                       "close %s KiB" % (
                           v.label, ", ".join("%.0f" % m["bytes_per_conn"] for m in ok),
                           ", ".join("%.2f" % m["open_s"] for m in ok),
                           ", ".join("%+d" % m["kept_kib"] for m in ok)))
    return out


# ---------------------------------------------------------------- RSS over many requests

RSS_POINTS = (100000, 1000000)


def _count(n):
    return "%dM" % (n // 1000000) if n % 1000000 == 0 else (
        "%dk" % (n // 1000) if n % 1000 == 0 else str(n))


def measure_rss_flat(ctx):
    """One long keep-alive wrk load; the proxy's VmRSS when the backend has served the
    first and the last of RSS_POINTS requests since the load began (its stub_status
    polled every 10 ms; each poll is a request of its own, not counted), and the proxy's
    CPU per request between them. wrk is stopped at the last point."""
    s, sc = ctx.settings, ctx.scenario
    points = ctx.option("rss_points", RSS_POINTS)
    conns = sc.conns or s.conns
    status_port = ctx.backends[0].status_port
    base, polls = stub_counters(status_port)[1], 0
    limit = 300
    p = spawn_wrk(ctx.lab.wrk, ctx.port, limit, conns, s.threads, list(sc.headers))
    t0 = time.monotonic()
    readings, served = [], 0
    try:
        for target in points:
            while True:
                if p.poll() is not None:
                    _, raw = stop_wrk(p)
                    raise RunError("wrk ended after %d requests: %s"
                                   % (served, raw.strip().replace("\n", " ")[-200:]))
                if not ctx.child.alive():
                    raise RunError("%s during the load" % ctx.child.exit_reason())
                polls += 1
                served = stub_counters(status_port)[1] - base - polls
                if served >= target:
                    break
                if time.monotonic() - t0 > limit - 5:
                    raise RunError("only %d requests in %d s" % (served, limit - 5))
                time.sleep(0.01)
            pids = ctx.child.pids()
            readings.append((served, rss_kib(pids), cpu_ticks(pids), time.monotonic()))
    finally:
        wrk, raw = stop_wrk(p)
    (n0, rss0, cpu0, t_0), (n1, rss1, cpu1, t_1) = readings[0], readings[-1]
    m = {
        "rss_first_mib": rss0 / 1024.0,
        "rss_last_mib": rss1 / 1024.0,
        "growth_kib": rss1 - rss0,
        "interval_cpu_us_per_req": cpu_delta_seconds(cpu0, cpu1) * 1e6 / max(1, n1 - n0),
        "rps": (n1 - n0) / (t_1 - t_0) if t_1 > t_0 else None,
        "points": [(n, r) for n, r, _, _ in readings],
        "processes": len(pids),
    }
    if wrk is not None:
        m["errors"], m["non2xx"] = wrk["errors"], wrk["non2xx"]
    return m


RSS_FLAT_COLUMNS = (
    Column("rss_first_mib", "RSS at %s req MiB" % _count(RSS_POINTS[0]), "{:.2f}", "lower"),
    Column("rss_last_mib", "RSS at %s req MiB" % _count(RSS_POINTS[-1]), "{:.2f}", "lower"),
    Column("growth_kib", "growth KiB", "{:+.0f}", "lower"),
    Column("interval_cpu_us_per_req", "CPU µs/req", "{:.1f}", "lower"),
    Column("rps", "rps", "{:.0f}", "higher"),
)


def rss_flat_notes(result):
    out = []
    for v in result["variants"]:
        ok = [r["metrics"] for r in result["runs"].get(v.key, []) if r["ok"]]
        if ok:
            out.append("%s per run: RSS %s" % (v.label, "; ".join(
                ", ".join("%.2f MiB at %d req" % (kib / 1024.0, n) for n, kib in m["points"])
                for m in ok)))
    return out


# ---------------------------------------------------------------- cache stampede

STAMPEDE_CLIENTS = 1000
STAMPEDE_BODY = 20000  # origin.py's body size (servers.start_slow_origin)


async def _stampede_one(port, target, out, i):
    for _ in range(100):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            break
        except OSError:
            await asyncio.sleep(0.05)
    else:
        out[i] = None
        return
    w.write(b"GET %s HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n" % target)
    await w.drain()
    out[i] = await r.read()
    w.close()


def _stampede(port, target, n, timeout):
    out = [None] * n

    async def run():
        await asyncio.wait_for(asyncio.gather(
            *[_stampede_one(port, target, out, i) for i in range(n)]), timeout)

    asyncio.run(run())
    return out


def _origin_count(origin, path):
    status, body = http_get(origin.port, "/_count?path=" + path)
    if status != 200:
        raise RunError("origin /_count answered %d" % status)
    return int(body)


def measure_stampede(ctx):
    """STAMPEDE_CLIENTS concurrent first requests (asyncio, one `Connection: close`
    connection each) for one cold key whose origin takes 200 ms; origin requests for
    that key counted by the origin itself, and the clients that got the whole body."""
    _fd_room(ctx, STAMPEDE_CLIENTS)
    origin = ctx.backends[0]
    # a key of its own per run: nothing of an earlier run can be in any cache
    path = "/stampede/%s-%d" % (ctx.variant.key if ctx.variant else ctx.proxy,
                                time.monotonic_ns())
    cpu0 = cpu_ticks(ctx.child.pids())
    t0 = time.monotonic()
    out = _stampede(ctx.port, path.encode(), STAMPEDE_CLIENTS, 120)
    took = time.monotonic() - t0
    time.sleep(0.2)
    if not ctx.child.alive():
        raise RunError("%s during the stampede" % ctx.child.exit_reason())
    cpu1 = cpu_ticks(ctx.child.pids())
    full = 0
    for raw in out:
        if raw and raw.startswith(b"HTTP/1.1 200"):
            head, _, body = raw.partition(b"\r\n\r\n")
            full += len(body) == STAMPEDE_BODY
    return {
        "requests": STAMPEDE_CLIENTS,
        "origin_requests": _origin_count(origin, path),
        "full_bodies": full,
        "seconds": took,
        "cpu_ms": cpu_delta_seconds(cpu0, cpu1) * 1e3,
    }


STAMPEDE_COLUMNS = (
    Column("origin_requests", "origin requests", "{:.0f}", "lower"),
    Column("full_bodies", "clients with the full body", "{:.0f}", "higher"),
    Column("seconds", "all answered in s", "{:.2f}", "lower"),
    Column("cpu_ms", "proxy CPU ms", "{:.0f}", "lower"),
)

CACHE_HIT_COLUMNS = (
    Column("rps", "rps", "{:.0f}", "higher"),
    Column("p50_ms", "p50 ms", "{:.2f}", "lower"),
    Column("p99_ms", "p99 ms", "{:.2f}", "lower"),
    Column("cpu_us_per_req", "CPU µs/req", "{:.1f}", "lower"),
    Column("rss_mib", "RSS MiB", "{:.1f}", "lower"),
    Column("backend_requests", "origin requests", "{:.0f}", "lower"),
)


def cache_hit_bar(result):
    """The issue's bar: hit CPU per request at most 0.9x nginx's."""
    s = median_of(result, "sluice", "cpu_us_per_req")
    n = median_of(result, "nginx", "cpu_us_per_req")
    if s is None or n is None:
        return [("cached-hit CPU per request ≤ 0.9× nginx's", None)]
    return [("cached-hit CPU per request ≤ 0.9× nginx's: %.1f vs %.1f µs (%.2f×)"
             % (s, n, s / n), s <= 0.9 * n)]


def stampede_bar(result):
    runs = [r["metrics"]["origin_requests"] for r in result["runs"].get("sluice", [])
            if r.get("ok")]
    if not runs:
        return [("stampede: exactly 1 origin request for sluice", None)]
    return [("stampede: exactly 1 origin request for sluice: %s (every run)"
             % ", ".join(str(n) for n in runs), all(n == 1 for n in runs))]


def stampede_notes(result):
    lines = []
    for v in result["variants"]:
        got = [r["metrics"] for r in result["runs"][v.key] if r.get("ok")]
        if got:
            lines.append("%s: origin requests per run %s; clients with the full body %s of %d"
                         % (v.label, ", ".join(str(m["origin_requests"]) for m in got),
                            ", ".join(str(m["full_bodies"]) for m in got),
                            STAMPEDE_CLIENTS))
    return lines


# ---------------------------------------------------------------- scenarios

@dataclass
class Variant:
    key: str             # unique in its scenario; runs are stored under it
    proxy: str           # "sluice", "nginx", "haproxy"
    label: str           # row label
    options: dict = field(default_factory=dict)


PROXY_LABELS = {"sluice": "sluice", "nginx": "nginx", "haproxy": "HAProxy"}
DEFAULT_RATIOS = (("sluice", "nginx", "sluice/nginx"), ("sluice", "haproxy", "sluice/HAProxy"),
                  ("sluice", "sluice-base", "sluice/baseline"))


def baseline_variant():
    """With BENCH_SLUICED_BASE set, a second sluice row running that binary (a build of
    an earlier commit), so a change is measured against its base in one run."""
    path = os.environ.get("BENCH_SLUICED_BASE", "").strip()
    if not path:
        return None
    return Variant("sluice-base", "sluice", "sluice (baseline: %s)" % os.path.basename(path),
                   {"sluiced": path})


@dataclass
class Scenario:
    name: str
    title: str
    workers: int
    description: str
    headers: tuple = ()
    backends: int = 1
    options: dict = field(default_factory=dict)
    measure: Callable = measure_wrk
    columns: tuple = WRK_COLUMNS
    conns: Optional[int] = None
    default: bool = True
    backend_ports: int = 1
    split_clients: bool = False
    variants: tuple = ()
    ratios: tuple = DEFAULT_RATIOS
    bars: tuple = ()
    notes: Optional[Callable] = None
    origin: str = "nginx"  # the backend: "nginx" (start_backend) or "slow" (origin.py)

    def rows(self, proxies):
        """The variants measured, given the proxies of BENCH_PROXIES."""
        if not self.variants:
            rows = [Variant(p, p, PROXY_LABELS[p]) for p in proxies]
            base = baseline_variant()
            if base and "sluice" in proxies:
                rows.insert(1, base)
            return rows
        return [v for v in self.variants if v.proxy in proxies]


def median_of(result, key, metric):
    """Median of one metric over a variant's successful runs (None if none)."""
    vals = [r["metrics"][metric] for r in result["runs"].get(key, [])
            if r["ok"] and r["metrics"].get(metric) is not None]
    return statistics.median(vals) if vals else None


def _fmt(v, fmt="{:.2f}"):
    return "–" if v is None else fmt.format(v)


# ---- pools

POOL_COLUMNS = (
    Column("rps", "rps", "{:.0f}", "higher"),
    Column("p99_ms", "p99 ms", "{:.2f}", "lower"),
    Column("cpu_us_per_req", "CPU µs/req", "{:.1f}", "lower"),
    Column("upstream_per_1k", "upstream conns/1k req", "{:.2f}", "lower"),
    Column("reuse_pct", "upstream reuse %", "{:.3f}", "higher"),
    Column("rss_mib", "RSS MiB", "{:.1f}", "lower"),
)

POOL_BAR_PER_1K = 0.5


def pool_bar(result):
    v = median_of(result, "sluice", "upstream_per_1k")
    worst = [r["metrics"]["upstream_per_1k"] for r in result["runs"].get("sluice", [])
             if r["ok"]]
    text = ("sluice opens at most %.1f upstream connections per 1000 requests (reuse "
            "≥ 99.95%%): median %s, worst run %s"
            % (POOL_BAR_PER_1K, _fmt(v), _fmt(max(worst) if worst else None)))
    return [(text, None if v is None else max(worst) <= POOL_BAR_PER_1K)]


def pool_notes(result):
    out = []
    for key in ("sluice", "nginx", "haproxy"):
        ok = [r["metrics"] for r in result["runs"].get(key, []) if r["ok"]]
        if not ok:
            continue
        line = "%s per run: upstream conns/1k req %s" % (
            PROXY_LABELS[key], ", ".join("%.2f" % m["upstream_per_1k"] for m in ok))
        if key == "sluice" and "requests_w0" in ok[0]:
            line += "; requests per worker %s; sluice's own upstream_new %s" % (
                ", ".join("/".join(str(m[k]) for k in sorted(m) if k.startswith("requests_w"))
                          for m in ok),
                ", ".join(str(m.get("sluice_upstream_new")) for m in ok))
        out.append(line)
    return out


_POOL_OPTS = {"nginx_keepalive": 32, "sluice_pool_yaml": "{ max_idle_per_worker: 128 }",
              "sluice_admin": True}
_POOL = ("`Connection: close` clients (two wrk processes, one pinned to each CPU, 25 "
         "connections each) over 2 workers; the proxies keep their upstream connections "
         "open. nginx has `keepalive 32` per worker here (the issue's setting, unlike the "
         "128 of the other scenarios), HAProxy `http-reuse always`, sluice "
         "`pool: { max_idle_per_worker: 128 }`.")

# ---- steering

STEER_VARIANTS = (
    Variant("sluice-on", "sluice", "sluice, steering on",
            {"sluice_steering": "auto", "sluice_admin": True}),
    Variant("sluice-off", "sluice", "sluice, steering off",
            {"sluice_steering": "off", "sluice_admin": True}),
)
STEER_RATIOS = (("sluice-on", "sluice-off", "on/off"),)

BALANCE_COLUMNS = (
    Column("rps", "rps", "{:.0f}", "higher"),
    Column("cpu_us_per_req", "CPU µs/req", "{:.1f}", "lower"),
    Column("accepted_w0", "accepted w0", "{:.0f}", "higher"),
    Column("accepted_w1", "accepted w1", "{:.0f}", "higher"),
    Column("accepted_maxmin", "accepted max/min", "{:.2f}", "lower"),
    Column("requests_w0", "requests w0", "{:.0f}", "higher"),
    Column("requests_w1", "requests w1", "{:.0f}", "higher"),
    Column("requests_maxmin", "requests max/min", "{:.2f}", "lower"),
    Column("own_cpu_pct", "own-CPU steered %", "{:.1f}", "higher"),
)

BALANCE_BAR = 1.1


def balance_bar(result):
    """The issue's bar is on `accepted` (balance of connections); requests per worker
    are shown alongside, without a verdict."""
    on = median_of(result, "sluice-on", "accepted_maxmin")
    off = median_of(result, "sluice-off", "accepted_maxmin")
    ron = median_of(result, "sluice-on", "requests_maxmin")
    roff = median_of(result, "sluice-off", "requests_maxmin")
    return [("steering on: max/min of connections accepted per worker ≤ %.1f: %s "
             "(steering off: %s; max/min of requests per worker, no bar: %s on, %s off)"
             % (BALANCE_BAR, _fmt(on), _fmt(off), _fmt(ron), _fmt(roff)),
             None if on is None else on <= BALANCE_BAR)]


def _label(result, key):
    return next((v.label for v in result["variants"] if v.key == key), key)


def steer_notes(result):
    out = []
    for key, runs in result["runs"].items():
        for i, r in enumerate(runs, 1):
            if r["ok"] and r["metrics"].get("steer"):
                out.append("%s run %d: steering reasons %s" % (
                    _label(result, key), i,
                    ", ".join("%s %d" % kv for kv in r["metrics"]["steer"].items())))
    return out


STALL_COLUMNS = (
    Column("conns", "connections", "{:.0f}", "higher"),
    Column("p50_ms", "p50 ms", "{:.2f}", "lower"),
    Column("p99_ms", "p99 ms", "{:.1f}", "lower"),
    Column("slow_pct", "> 1 s %", "{:.2f}", "lower"),
    Column("in_stall", "arrived during stall", "{:.0f}", "higher"),
    Column("landed", "landed on stalled worker", "{:.0f}", "lower"),
    Column("landed_pct", "landed %", "{:.1f}", "lower"),
    Column("landed_after_stale", "landed after heartbeat stale", "{:.0f}", "lower"),
    Column("p2c_stalled", "steered away (p2c_stalled)", "{:.0f}", "higher"),
)


def stall_bar(result):
    runs = [r["metrics"] for r in result["runs"].get("sluice-on", []) if r["ok"]]
    after = [m["landed_after_stale"] for m in runs if m.get("landed_after_stale") is not None]
    out = [("steering on: no new connection lands on the stalled worker once its heartbeat "
            "is `stall_ms` old: %s landed after that point (worst run%s)"
            % (_fmt(max(after) if after else None, "{:.0f}"),
               "" if len(after) <= 1 else ", of %d runs" % len(after)),
            None if not after else max(after) == 0)]
    on = median_of(result, "sluice-on", "slow_pct")
    off = median_of(result, "sluice-off", "slow_pct")
    ratio = on / off if on is not None and off else None
    out.append(("share of connections slower than 1 s with steering ≤ a tenth of the share "
                "without: %s%% vs %s%% (ratio %s)" % (_fmt(on), _fmt(off), _fmt(ratio)),
                None if ratio is None else ratio <= 0.1))
    return out


def stall_notes(result):
    out = []
    off = median_of(result, "sluice-off", "slow_pct")
    for key, runs in result["runs"].items():
        if key in ("sluice-on", "sluice-off", "nginx-reuseport") or not any(
                r["ok"] for r in runs):
            continue
        label = _label(result, key)
        on = median_of(result, key, "slow_pct")
        after = [r["metrics"]["landed_after_stale"] for r in runs if r["ok"]]
        out.append("%s (no bar, for comparison): > 1 s %s%% vs %s%% without steering "
                   "(ratio %s); landed after heartbeat stale: %s (worst run)"
                   % (label, _fmt(on), _fmt(off),
                      _fmt(on / off if on is not None and off else None),
                      _fmt(max(after) if after else None, "{:.0f}")))
    for key, runs in result["runs"].items():
        for i, r in enumerate(runs, 1):
            if not r["ok"]:
                continue
            m = r["metrics"]
            bits = ["p99.9 %s ms" % _fmt(m.get("p999_ms"), "{:.0f}"),
                    "failed %d" % m["failed"]]
            if m["errors_sample"]:
                bits.append("errors e.g. %s" % "; ".join(m["errors_sample"]))
            bits.append("arrived after heartbeat stale %d" % m["after_stale"])
            if m.get("w0_accepted_stall") is not None:
                bits.append("worker 0's `accepted` grew by %d from just before the stall "
                            "to 100 ms after it (a rough check on \"landed\": its queue "
                            "may not be drained by then, and new arrivals count too)"
                            % m["w0_accepted_stall"])
            if m.get("steer"):
                bits.append("steering reasons " + ", ".join(
                    "%s %d" % kv for kv in m["steer"].items() if kv[1]))
            out.append("%s run %d: %s" % (_label(result, key), i, "; ".join(bits)))
    return out


# ---- one unpinned client

_ONE_CLIENT = ("One wrk process (`-t1`, BENCH_CONNS connections), not pinned: the "
               "scheduler moves it between the two CPUs, and on loopback the SYNs are "
               "handled on whichever CPU it runs on (the common local case: a sidecar, a "
               "node-local client, a health checker). nginx and HAProxy as in the other "
               "2-worker scenarios, nginx also with `reuseport` (the kernel's hash).")
_ONE_CLIENT_ROWS = (
    Variant("sluice", "sluice", "sluice", {"sluice_admin": True}),
    Variant("sluice-aware", "sluice", "sluice, load-aware (`load_margin: 10`, `load_signal: both`)",
            {"sluice_admin": True, "sluice_bpf": {"load_margin": 10, "load_signal": "both"}}),
    Variant("nginx", "nginx", "nginx", {}),
    Variant("nginx-reuseport", "nginx", "nginx reuseport", {"nginx_reuseport": True}),
    Variant("haproxy", "haproxy", "HAProxy", {}),
)
# BENCH_SLUICED_BASE: the baseline build as a row here too (these rows are variants)
_ONE_CLIENT_ROWS = _ONE_CLIENT_ROWS[:1] + tuple(
    v for v in (baseline_variant(),) if v is not None) + _ONE_CLIENT_ROWS[1:]
_ONE_CLIENT_RATIOS = DEFAULT_RATIOS + (("sluice", "nginx-reuseport", "sluice/nginx reuseport"),)
ONE_CLIENT_COLUMNS = WRK_COLUMNS[:4] + (
    Column("accepted_maxmin", "accepted max/min", "{:.2f}", "lower"),
    Column("requests_maxmin", "requests max/min", "{:.2f}", "lower"),
)
# sluice's steering policies side by side under the same one-client load (not default:
# it is how the defaults were chosen, docs/architecture.md "Steering on load")
_STEER_POLICY_ROWS = (
    Variant("sluice", "sluice", "sluice (defaults)", {"sluice_admin": True}),
    Variant("sluice-conns", "sluice", "sluice, `load_signal: connections`",
            {"sluice_admin": True, "sluice_bpf": {"load_signal": "connections"}}),
    Variant("sluice-cpu", "sluice", "sluice, `load_signal: cpu`",
            {"sluice_admin": True, "sluice_bpf": {"load_signal": "cpu"}}),
    Variant("sluice-aware", "sluice", "sluice, load-aware (`load_margin: 10`, `load_signal: both`)",
            {"sluice_admin": True, "sluice_bpf": {"load_margin": 10, "load_signal": "both"}}),
    Variant("sluice-strict", "sluice", "sluice, strict locality (`load_margin: 1000`, "
            "`load_signal: connections`)",
            {"sluice_admin": True, "sluice_bpf": {"load_margin": 1000,
                                                  "load_signal": "connections"}}),
    Variant("sluice-noloc", "sluice", "sluice, `locality: off`",
            {"sluice_admin": True, "sluice_bpf": {"locality": "off"}}),
    Variant("sluice-unpinned", "sluice", "sluice, `workers_pin: false`",
            {"sluice_admin": True, "sluice_bpf": {"workers_pin": "false"}}),
    Variant("sluice-off", "sluice", "sluice, steering off",
            {"sluice_admin": True, "sluice_steering": "off"}),
    Variant("nginx", "nginx", "nginx", {}),
)


def one_client_bar(result):
    rps = [median_of(result, k, "rps") for k in ("sluice", "nginx")]
    cpu = [median_of(result, k, "cpu_us_per_req") for k in ("sluice", "nginx")]
    ok_rps = None if None in rps else rps[0] >= 0.95 * rps[1]
    ok_cpu = None if None in cpu else cpu[0] <= cpu[1]
    return [("sluice requests/s ≥ 0.95× nginx's: %s" % _fmt(
                rps[0] / rps[1] if None not in rps and rps[1] else None), ok_rps),
            ("sluice CPU per request ≤ nginx's: %s" % _fmt(
                cpu[0] / cpu[1] if None not in cpu and cpu[1] else None), ok_cpu)]


_STALL_OPTS = {"stall_ms": 2000, "lead_s": 1.0, "tail_s": 1.0, "rate_per_cpu": 400}

_KEEPALIVE = ("wrk keeps its client connections open and sends requests back to back; "
              "the proxy keeps its upstream connections open.")
_CLOSE = ("wrk sends `Connection: close`: every request comes on a new client "
          "connection (connect, request, close); upstream connections are still reused.")

_TLS = ("The proxy terminates TLS with the same throwaway certificate for all three "
        "(%s, made at run time with openssl), TLS 1.2 and 1.3 offered by all three (clients "
        "negotiate 1.3; nginx 1.22 needs `ssl_protocols TLSv1.2 TLSv1.3` for that), each "
        "with its own defaults otherwise (session tickets on); plain HTTP to the backend. ")

_CACHE = ("The proxy caches (sluice `cache:` zone of 64 MiB and a route cache with lock "
          "5 s; nginx `proxy_cache` with `keys_zone` and the cache files on /dev/shm, "
          "`proxy_cache_lock on`; HAProxy's `cache` section of 64 MB); the backend nginx "
          "serves /cache/%s with `Cache-Control: max-age=3600`, fetched once through the "
          "proxy before the load, so every measured request is a hit (\"origin requests\" "
          "counts what still reached the backend).")

SCENARIOS = [
    Scenario("keepalive-1w", "Keep-alive clients, 1 worker", 1, _KEEPALIVE),
    # 2 workers: one wrk per CPU, so every proxy's workers all get clients (one
    # unpinned wrk thread would sit on one CPU, and sluice's steering would rightly
    # give all its connections to that CPU's worker)
    Scenario("keepalive-2w", "Keep-alive clients, 2 workers", 2, _KEEPALIVE,
             split_clients=True),
    Scenario("close-1w", "`Connection: close` clients, 1 worker", 1, _CLOSE,
             headers=("Connection: close",)),
    Scenario("close-2w", "`Connection: close` clients, 2 workers", 2, _CLOSE,
             headers=("Connection: close",), split_clients=True),
    Scenario("close-2w-1client", "`Connection: close`, 2 workers, one unpinned client", 2,
             _CLOSE + " " + _ONE_CLIENT, headers=("Connection: close",),
             variants=_ONE_CLIENT_ROWS, ratios=_ONE_CLIENT_RATIOS,
             columns=ONE_CLIENT_COLUMNS, bars=(one_client_bar,), notes=steer_notes),
    Scenario("keepalive-2w-1client", "Keep-alive, 2 workers, one unpinned client", 2,
             _KEEPALIVE + " " + _ONE_CLIENT, variants=_ONE_CLIENT_ROWS,
             ratios=_ONE_CLIENT_RATIOS, columns=ONE_CLIENT_COLUMNS, bars=(one_client_bar,),
             notes=steer_notes),
    Scenario("steer-policy-close", "Steering policies: `Connection: close`, 2 workers, one "
             "unpinned client", 2,
             _CLOSE + " " + _ONE_CLIENT + " Rows: sluice's steering knobs one at a time.",
             headers=("Connection: close",), variants=_STEER_POLICY_ROWS,
             columns=ONE_CLIENT_COLUMNS, notes=steer_notes, default=False),
    Scenario("steer-policy-keepalive", "Steering policies: keep-alive, 2 workers, one "
             "unpinned client", 2,
             _KEEPALIVE + " " + _ONE_CLIENT + " Rows: sluice's steering knobs one at a time.",
             variants=_STEER_POLICY_ROWS, columns=ONE_CLIENT_COLUMNS, notes=steer_notes,
             default=False),
    Scenario("pool-close-2w", "Upstream pools: `Connection: close` clients, 2 workers, "
             "1 backend port", 2, _POOL, headers=("Connection: close",),
             options=_POOL_OPTS, columns=POOL_COLUMNS, split_clients=True,
             bars=(pool_bar,), notes=pool_notes),
    Scenario("pool-64ports", "Upstream pools: `Connection: close` clients, 2 workers, "
             "64 backend ports", 2, _POOL + " The backend nginx listens on 64 ports (one "
             "server block, 64 `listen` lines, one stub_status counting them all); every "
             "proxy balances round robin over 64 servers.",
             headers=("Connection: close",), backend_ports=64, options=_POOL_OPTS,
             columns=POOL_COLUMNS, split_clients=True, bars=(pool_bar,), notes=pool_notes),
    Scenario("steer-balance-keepalive", "Steering: balance, keep-alive clients, 2 workers", 2,
             "sluice with and without its BPF steering program. Two wrk processes, one "
             "pinned to each CPU, 25 keep-alive connections each; per-worker `accepted` and "
             "`requests` from the admin API (`GET /workers`) over the measured load.",
             variants=STEER_VARIANTS, ratios=STEER_RATIOS, columns=BALANCE_COLUMNS,
             split_clients=True, bars=(balance_bar,), notes=steer_notes),
    Scenario("steer-balance-close", "Steering: balance under connection churn, 2 workers", 2,
             "As the keep-alive balance scenario, but wrk sends `Connection: close`: a new "
             "connection per request, so `accepted` counts every request.",
             headers=("Connection: close",), variants=STEER_VARIANTS, ratios=STEER_RATIOS,
             columns=BALANCE_COLUMNS, split_clients=True, notes=steer_notes),
    Scenario("steer-stall", "Steering: a stalled worker, 2 workers", 2,
             "New connections (`Connection: close`, one request each) at a steady %d/s from "
             "each CPU (tools/bench/connload.py, one process pinned to each CPU) for %g s; "
             "after %g s worker 0 blocks its loop for %d ms (sluice: `POST /debug/stall` on "
             "the admin socket, `admin.debug: true`; nginx, as the kernel-hash reference: "
             "2 workers with `reuseport`, SIGSTOP/SIGCONT of one worker). Latency is "
             "connect-to-first-byte per connection; failures count as slower than 1 s. "
             "\"Landed\" is the stalled worker's accept queue (ss Recv-Q of its listening "
             "socket) just before the stall ends, less what it held when the stall began: "
             "the connections that waited for it. \"After heartbeat stale\" counts from "
             "stall start + the row's `bpf.stall_ms` (sluiced's default 200 ms unless the "
             "row says otherwise; 200 ms for the rows without steering) + 60 ms. With "
             "steering on, connections whose SYN reaches CPU 0 during the first `stall_ms` "
             "still go to worker 0 (its heartbeat is fresh), but once the heartbeat is "
             "stale the other worker accepts them from worker 0's queue (sluiced's "
             "stalled-worker rescue), so they wait about `stall_ms`, not the whole stall; "
             "without steering about ½ of the stall's arrivals wait for worker 0 to wake."
             % (_STALL_OPTS["rate_per_cpu"],
                _STALL_OPTS["lead_s"] + _STALL_OPTS["stall_ms"] / 1000.0 + _STALL_OPTS["tail_s"],
                _STALL_OPTS["lead_s"], _STALL_OPTS["stall_ms"]),
             options=_STALL_OPTS, measure=measure_stall, columns=STALL_COLUMNS,
             variants=STEER_VARIANTS + (
                 Variant("sluice-on-50", "sluice", "sluice, steering on, `bpf.stall_ms: 50`",
                         {"sluice_steering": "auto", "sluice_admin": True,
                          "sluice_stall_ms": 50}),
                 Variant("nginx-reuseport", "nginx", "nginx reuseport (kernel hash)",
                         {"nginx_reuseport": True}),),
             ratios=STEER_RATIOS, bars=(stall_bar,), notes=stall_notes),
    Scenario("hotswap-2w", "Hot swap: upstream server changed under keep-alive load, "
             "2 workers", 2,
             "wrk keep-alive (50 connections, one wrk per CPU) through 2 workers for the "
             "run's duration with nothing changing, then again while the upstream's server "
             "moves between the backend's two ports %d times, evenly spread: sluice by "
             "`PUT /upstreams/backend` on its admin socket plus %d SIGHUP reloads of an "
             "unchanged file, HAProxy by `set server be/s0 addr 127.0.0.1 port P` on its "
             "runtime API (one server), nginx by rewriting its upstream block and SIGHUP "
             "each time. Bar: no non-2xx, no socket errors, p99 swapping at most 1.5x p99 "
             "quiet, CPU per request unchanged. nginx's CPU while swapping misses the old "
             "workers it retires (a lower bound)." % (HOTSWAP_SWAPS, HOTSWAP_RELOADS),
             backend_ports=2, split_clients=True, measure=measure_hotswap,
             columns=HOTSWAP_COLUMNS,
             variants=(Variant("sluice", "sluice", "sluice (PUT + SIGHUP)",
                               {"sluice_admin": True}),
                       Variant("haproxy", "haproxy", "HAProxy (runtime API)",
                               {"haproxy_admin": True, "haproxy_one_server": True}),
                       Variant("nginx", "nginx", "nginx (rewrite + SIGHUP)", {})),
             default=False),
    _upgrade_scenario("upgrade-keepalive-2w", "Binary upgrade x%d under keep-alive load, "
                      "2 workers" % UPGRADES, (), "keep-alive"),
    _upgrade_scenario("upgrade-close-2w", "Binary upgrade x%d under Connection: close "
                      "load, 2 workers" % UPGRADES, ("Connection: close",),
                      "with `Connection: close`"),
    Scenario("tls-keepalive-1w", "TLS: keep-alive HTTPS clients, 1 worker", 1,
             _TLS % "ECDSA P-256" + _KEEPALIVE, options={"tls": "ec", "sluice_admin": True},
             columns=TLS_WRK_COLUMNS, bars=(_tls_bar("cpu_us_per_req", 0.9,
                                                     "CPU per keep-alive HTTPS request"),),
             default=True),
    Scenario("tls-keepalive-2w", "TLS: keep-alive HTTPS clients, 2 workers", 2,
             _TLS % "ECDSA P-256" + _KEEPALIVE, options={"tls": "ec", "sluice_admin": True},
             columns=TLS_WRK_COLUMNS, split_clients=True,
             bars=(_tls_bar("cpu_us_per_req", 0.9, "CPU per keep-alive HTTPS request"),),
             default=True),
    Scenario("tls-resume-2w", "TLS: `Connection: close` HTTPS clients (resumed), 2 workers", 2,
             _TLS % "ECDSA P-256" + "wrk sends `Connection: close` and reconnects with the "
             "session of its last connection, so nearly every handshake is a resumption "
             "(sluice's own count of full and resumed handshakes is under the table).",
             headers=("Connection: close",), options={"tls": "ec", "sluice_admin": True},
             columns=TLS_WRK_COLUMNS, split_clients=True,
             bars=(_tls_bar("cpu_us_per_req", 0.9, "CPU per resumed request"), resumed_bar),
             notes=tls_notes, default=True),
    Scenario("tls-full-ecdsa-1w", "TLS: full handshakes, ECDSA P-256, 1 worker", 1,
             _TLS % "ECDSA P-256" + "Two `openssl s_time -new` clients in parallel, one "
             "pinned to each CPU: a full handshake per connection, no request.",
             options={"tls": "ec", "sluice_admin": True}, measure=measure_handshakes,
             columns=HS_COLUMNS, bars=(_tls_bar("cpu_us_per_hs", 0.95,
                                                "CPU per full ECDSA handshake"),),
             default=True),
    Scenario("tls-full-ecdsa-2w", "TLS: full handshakes, ECDSA P-256, 2 workers", 2,
             _TLS % "ECDSA P-256" + "Two `openssl s_time -new` clients in parallel, one "
             "pinned to each CPU: a full handshake per connection, no request.",
             options={"tls": "ec", "sluice_admin": True}, measure=measure_handshakes,
             columns=HS_COLUMNS, bars=(_tls_bar("cpu_us_per_hs", 0.95,
                                                "CPU per full ECDSA handshake"),),
             default=True),
    Scenario("tls-full-rsa-1w", "TLS: full handshakes, RSA-2048, 1 worker", 1,
             _TLS % "RSA-2048" + "Two `openssl s_time -new` clients in parallel, one "
             "pinned to each CPU: a full handshake per connection, no request.",
             options={"tls": "rsa", "sluice_admin": True}, measure=measure_handshakes,
             columns=HS_COLUMNS, default=True),
    Scenario("idle-memory", "Idle keep-alive connections", 1,
             "%d client connections (tools/bench/idleconn.py, at most 256 connecting at a "
             "time), one keep-alive `GET /` answered on each, then left open and idle. The "
             "proxy's VmRSS, summed over its processes (/proc/PID/status), is read just "
             "after it started, %g s after the last connection's response, and %g s after "
             "the client closed them all; bytes per idle connection = (idle − before) / %d. "
             "1 worker; nginx `worker_connections`, HAProxy `maxconn` and sluice's derived "
             "`limits.max_connections` are those of the other scenarios (all above %d)."
             % (IDLE_CONNS, IDLE_SETTLE_S, IDLE_SETTLE_S, IDLE_CONNS, IDLE_CONNS),
             conns=IDLE_CONNS, measure=measure_idle, columns=IDLE_COLUMNS,
             bars=(idle_bar,), notes=idle_notes),
    Scenario("cache-hit-1k", "HTTP cache: hits of a 1 KB object, keep-alive, 1 worker", 1,
             _KEEPALIVE + " " + _CACHE % "1k", options={"cache": True, "path": "/cache/1k"},
             columns=CACHE_HIT_COLUMNS, bars=(cache_hit_bar,)),
    Scenario("cache-hit-100k", "HTTP cache: hits of a 100 KB object, keep-alive, 1 worker", 1,
             _KEEPALIVE + " " + _CACHE % "100k",
             options={"cache": True, "path": "/cache/100k"}, columns=CACHE_HIT_COLUMNS,
             bars=(cache_hit_bar,)),
    Scenario("cache-stampede", "HTTP cache: a stampede on one cold key, 2 workers", 2,
             "%d concurrent first requests (asyncio, one `Connection: close` connection "
             "each) for a key whose origin (tools/bench/origin.py) takes 200 ms to answer "
             "%d bytes with `Cache-Control: max-age=3600`; the origin counts the requests "
             "for that key. Every run uses a key of its own. sluice: cache lock {timeout, "
             "age} 5 s; nginx `proxy_cache_lock on` with the same timeout and age; HAProxy's "
             "`cache` has no lock." % (STAMPEDE_CLIENTS, STAMPEDE_BODY),
             options={"cache": True}, measure=measure_stampede, columns=STAMPEDE_COLUMNS,
             origin="slow", ratios=(), bars=(stampede_bar,), notes=stampede_notes),
    Scenario("rss-flat-1m", "RSS over %s keep-alive requests" % _count(RSS_POINTS[-1]), 1,
             "One wrk (keep-alive, BENCH_CONNS connections) runs until the backend has "
             "served %s requests through the proxy; the proxy's VmRSS at %s and at %s "
             "requests (reported, not a bar: a proxy that holds per-request memory grows "
             "between the two). CPU µs/req and rps are over the same interval."
             % (_count(RSS_POINTS[-1]), _count(RSS_POINTS[0]), _count(RSS_POINTS[-1])),
             measure=measure_rss_flat, columns=RSS_FLAT_COLUMNS, notes=rss_flat_notes),
]


def select(spec):
    """Scenarios named by BENCH_SCENARIOS (comma-separated names, prefixes such as
    "close" for close-*, or globs), in table order; all default ones if empty."""
    items = [x.strip() for x in (spec or "").split(",") if x.strip()]
    if not items:
        return [s for s in SCENARIOS if s.default]
    chosen = set()
    for item in items:
        hits = [s.name for s in SCENARIOS
                if s.name == item or s.name.startswith(item + "-")
                or fnmatch.fnmatchcase(s.name, item)]
        if not hits:
            raise ValueError("unknown scenario %r (have: %s)"
                             % (item, ", ".join(s.name for s in SCENARIOS)))
        chosen.update(hits)
    return [s for s in SCENARIOS if s.name in chosen]
