"""The scenario table: what `make bench` measures, and how one run is measured.

To add a scenario (e.g. "steering" over several backends, or "pool" for upstream
connection reuse), append a Scenario to SCENARIOS. Fields:
  name         key for BENCH_SCENARIOS (a name, a prefix before "-", or a glob)
  title        heading of its table
  workers      workers for every proxy (nginx workers, HAProxy threads, sluice workers)
  description  one or two sentences for docs/benchmarks.md
  headers      extra request headers wrk sends
  backends     how many backend nginx servers the proxies balance over
  options      passed to the config builders in servers.py (see its docstring)
  measure      function(RunContext) -> dict of metrics; default measure_wrk
  columns      the metrics shown in its table (keys of that dict)
  conns        client connections (default BENCH_CONNS)
  default      run when BENCH_SCENARIOS is not set
"""
import fnmatch
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from loadgen import run_wrk, stub_counters
from procs import cpu_delta_seconds, cpu_ticks, rss_kib


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
    child: object        # procs.Child of the proxy
    port: int            # where the proxy listens
    backends: list       # servers.Backend


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


def measure_wrk(ctx):
    """One wrk load through the proxy; CPU, RSS and upstream connections around it."""
    s, sc = ctx.settings, ctx.scenario
    conns = sc.conns or s.conns
    headers = list(sc.headers)
    if s.warmup > 0:
        run_wrk(ctx.lab.wrk, ctx.port, s.warmup, conns, s.threads, headers)

    backend_pids = [p for b in ctx.backends for p in b.child.pids()]
    stub0 = [stub_counters(b.status_port) for b in ctx.backends]
    bcpu0 = cpu_ticks(backend_pids)
    cpu0 = cpu_ticks(ctx.child.pids())

    wrk, raw = run_wrk(ctx.lab.wrk, ctx.port, s.duration, conns, s.threads, headers)
    time.sleep(0.2)  # let the proxy finish closing the client connections

    if not ctx.child.alive():
        raise RunError("%s during the load" % ctx.child.exit_reason())
    pids = ctx.child.pids()
    cpu1 = cpu_ticks(pids)
    bcpu1 = cpu_ticks(backend_pids)
    rss = rss_kib(pids)
    stub1 = [stub_counters(b.status_port) for b in ctx.backends]

    n = wrk["requests"]
    if n == 0:
        raise RunError("no request completed (wrk: %s)" % raw.strip().replace("\n", " ")[-200:])
    # each stub_status GET is one connection and one request, counted in the second
    # reading; the backend's own requests check that every request went through
    upstream = sum(s1[0] - s0[0] - 1 for s0, s1 in zip(stub0, stub1))
    backend_requests = sum(s1[1] - s0[1] - 1 for s0, s1 in zip(stub0, stub1))
    return {
        "requests": n,
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
        "backend_requests": backend_requests,
        "processes": len(pids),
        "errors": wrk["errors"],
        "non2xx": wrk["non2xx"],
    }


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


_KEEPALIVE = ("wrk keeps its client connections open and sends requests back to back; "
              "the proxy keeps its upstream connections open.")
_CLOSE = ("wrk sends `Connection: close`: every request comes on a new client "
          "connection (connect, request, close); upstream connections are still reused.")

SCENARIOS = [
    Scenario("keepalive-1w", "Keep-alive clients, 1 worker", 1, _KEEPALIVE),
    Scenario("keepalive-2w", "Keep-alive clients, 2 workers", 2, _KEEPALIVE),
    Scenario("close-1w", "`Connection: close` clients, 1 worker", 1, _CLOSE,
             headers=("Connection: close",)),
    Scenario("close-2w", "`Connection: close` clients, 2 workers", 2, _CLOSE,
             headers=("Connection: close",)),
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
