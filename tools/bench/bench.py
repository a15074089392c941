#!/usr/bin/python3
"""sluice vs nginx vs HAProxy as HTTP reverse proxies: the harness behind `make bench`.

Starts one backend nginx (1 worker, `return 200 "hello world\\n"`, plus a stub_status
server to count the connections proxies open to it), then for each scenario runs the
three proxies in turn against it (sluice, nginx, HAProxy, sluice, nginx, HAProxy, ...),
each started afresh for the run, loaded with wrk, and measured: requests/s, p50/p99
latency, proxy CPU time per request (utime+stime from /proc), proxy RSS, and upstream
connections opened per 1000 requests. Prints a markdown table per scenario (medians,
then sluice/nginx and sluice/HAProxy ratios) and writes docs/benchmarks.md.

Scenarios live in scenarios.py (keep-alive and `Connection: close` clients, 1 and 2
workers; upstream pools over 1 and 64 backend ports; sluice's BPF steering on and
off: balance between workers, a stalled worker; RSS per idle keep-alive client
connection, 5,000 of them; RSS after 100k and 1M requests; HTTP cache hits of 1 KB
and 100 KB objects and a 1,000-request stampede on one cold key, origin requests counted);
servers.py holds the server
configurations. A scenario may have its own rows (variants: e.g. sluice with steering
on and off) instead of one per proxy; they are interleaved the same way. Everything runs on 127.0.0.1
from a private temp directory; every process started is stopped at the end, also on
Ctrl-C or an error. A sluiced that is missing or does not start is reported as
"failed to start" and the others are still measured.

Environment:
  BENCH_DURATION   seconds of load per run (default 10; 3 with BENCH_QUICK)
  BENCH_REPEAT     runs per proxy and scenario, interleaved (default 3; 1 with BENCH_QUICK)
  BENCH_CONNS      wrk client connections (default 50)
  BENCH_THREADS    wrk threads (default 1)
  BENCH_WARMUP     seconds of unmeasured load before each run (default 1; 0 = none)
  BENCH_QUICK=1    smoke test: 3 s, 1 repeat
  BENCH_SCENARIOS  comma-separated scenario names, prefixes or globs
                   (e.g. "keepalive", "close-2w", "pool", "steer", "idle-memory",
                   "rss-flat-1m"; default: all)
  BENCH_PROXIES    comma-separated subset of sluice,nginx,haproxy (default: all three)
  BENCH_SLUICED_BASE  a second sluiced binary (say, a build of the base commit) measured
                   as an extra row "sluice (baseline)" with a sluice/baseline ratio, in
                   the same interleaved run (scenarios without their own variants)
  SLUICED          sluiced binary (default $B/sluiced, e.g. `make B=build/x bench`;
                   else build/sluiced)
  BENCH_OUTPUT     markdown report path (default docs/benchmarks.md; "-" = do not write)
  BENCH_JSON       also write every run's raw figures to this JSON file
  BENCH_KEEP_TMP=1 keep the temp directory (configs, logs) and print its path
  BENCH_NGINX, BENCH_HAPROXY, BENCH_WRK   binaries (default /usr/sbin/nginx,
                   /usr/sbin/haproxy, /usr/bin/wrk)

The steering scenarios need root (BPF), `ss` (iproute2) for the accept queues, and
bpftool for the steering reasons (without it those columns show "–").

Usage: make bench        (or: BENCH_QUICK=1 /usr/bin/python3 tools/bench/bench.py)
"""
import datetime
import http.client
import json
import os
import shutil
import signal
import sys
import tempfile

sys.dont_write_bytecode = True  # keep tools/bench free of __pycache__
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from loadgen import WrkError, run_wrk  # noqa: E402
from procs import StartError, raise_nofile, stop_all  # noqa: E402
from report import document, machine_info, scenario_section  # noqa: E402
from scenarios import RunContext, RunError, Settings, select  # noqa: E402
from servers import (PROXIES, Lab, remove_all_pins, start_backend, start_proxy,  # noqa: E402
                     start_slow_origin, stop_proxy)

ENV_SHOWN = ("BENCH_QUICK", "BENCH_DURATION", "BENCH_REPEAT", "BENCH_CONNS", "BENCH_THREADS",
             "BENCH_WARMUP", "BENCH_SCENARIOS", "BENCH_PROXIES", "SLUICED", "BENCH_SLUICED_BASE",
             "B")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def _env_int(name, default, minimum):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("%s=%r is not a whole number" % (name, raw))
    if value < minimum:
        raise ValueError("%s must be at least %d" % (name, minimum))
    return value


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "no", "false", "off")


def settings_from_env():
    quick = _env_flag("BENCH_QUICK")
    return Settings(duration=_env_int("BENCH_DURATION", 3 if quick else 10, 1),
                    repeat=_env_int("BENCH_REPEAT", 1 if quick else 3, 1),
                    conns=_env_int("BENCH_CONNS", 50, 1),
                    threads=_env_int("BENCH_THREADS", 1, 1),
                    warmup=_env_int("BENCH_WARMUP", 1, 0),
                    quick=quick)


def proxies_from_env():
    raw = os.environ.get("BENCH_PROXIES", "").strip()
    if not raw:
        return list(PROXIES)
    want = [p.strip().lower() for p in raw.split(",") if p.strip()]
    bad = [p for p in want if p not in PROXIES]
    if bad:
        raise ValueError("unknown proxy %s in BENCH_PROXIES (have: %s)"
                         % (", ".join(bad), ", ".join(PROXIES)))
    return [p for p in PROXIES if p in want]


def command_line():
    env = ["%s=%s" % (k, os.environ[k]) for k in ENV_SHOWN if os.environ.get(k)]
    cmd = "make bench" if "MAKELEVEL" in os.environ else "/usr/bin/python3 tools/bench/bench.py"
    return " ".join(env + [cmd])


def _summary(sc, m):
    cols = [c for c in sc.columns if m.get(c.key) is not None]
    return ", ".join("%s %s" % (c.header, c.fmt.format(m[c.key])) for c in cols)


def _backends_for(lab, sc, backends):
    """The backends of a scenario, started on first use and kept for later ones;
    `backends` maps (index, ports) to a running Backend."""
    mine = []
    for i in range(sc.backends):
        key = (i, sc.backend_ports) if sc.origin == "nginx" else (i, sc.origin)
        if key not in backends:
            backends[key] = (start_backend(lab, i, sc.backend_ports) if sc.origin == "nginx"
                             else start_slow_origin(lab, i))
        mine.append(backends[key])
    return mine


def run_scenario(lab, settings, sc, proxies, backends, start_failures):
    """All runs of one scenario, its rows (variants) interleaved;
    {"scenario", "variants", "runs"} with runs keyed by variant."""
    variants = sc.rows(proxies)
    runs = {v.key: [] for v in variants}
    mine = _backends_for(lab, sc, backends)
    for rep in range(1, settings.repeat + 1):
        for v in variants:
            where = "%s %d/%d %s" % (sc.name, rep, settings.repeat, v.label)
            for b in mine:
                if not b.child.alive():
                    raise RuntimeError("backend nginx on port %d died: %s"
                                       % (b.port, b.child.exit_reason()))
            opts = dict(sc.options, **v.options)
            # A configuration that failed to start once is not retried.
            key = (v.proxy, sc.workers, sc.backends, sc.backend_ports,
                   repr(sorted(opts.items())))
            if key in start_failures:
                runs[v.key].append(dict(start_failures[key]))
                log("%s: skipped, failed to start before: %s"
                    % (where, start_failures[key]["error"]))
                continue
            tag = "%s-%s-r%d" % (v.key, sc.name, rep)
            try:
                child, port = start_proxy(lab, v.proxy, tag, sc.workers, mine, opts)
            except StartError as e:
                fail = {"ok": False, "start_failed": True, "error": e.reason,
                        "log_tail": e.log_tail}
                start_failures[key] = fail
                runs[v.key].append(dict(fail))
                log("%s: failed to start: %s" % (where, e.reason))
                continue
            try:
                ctx = RunContext(lab, settings, sc, v.proxy, child, port, mine, v)
                metrics = sc.measure(ctx)
                runs[v.key].append({"ok": True, "metrics": metrics})
                log("%s: %s" % (where, _summary(sc, metrics)))
            except (RunError, WrkError, OSError, RuntimeError, ValueError,
                    http.client.HTTPException) as e:
                runs[v.key].append({"ok": False, "start_failed": False, "error": str(e),
                                    "log_tail": child.log_tail()})
                log("%s: failed: %s" % (where, e))
            finally:
                stop_proxy(child)
    return {"scenario": sc, "variants": variants, "runs": runs}


class Interrupted(Exception):
    pass


def _on_signal(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def main():
    try:
        settings = settings_from_env()
        scenarios = select(os.environ.get("BENCH_SCENARIOS"))
        proxies = proxies_from_env()
    except ValueError as e:
        log("bench: %s" % e)
        return 2

    # `make B=build/x bench` builds into build/x (make exports command-line variables
    # to the recipe): measure that sluiced, not build/'s
    sluiced = os.environ.get("SLUICED") or os.path.join(
        ROOT, os.environ.get("B") or "build", "sluiced")
    lab = Lab(tmp="", nofile=0,
              nginx=os.environ.get("BENCH_NGINX", "/usr/sbin/nginx"),
              haproxy=os.environ.get("BENCH_HAPROXY", "/usr/sbin/haproxy"),
              wrk=os.environ.get("BENCH_WRK", "/usr/bin/wrk"),
              sluiced=os.path.abspath(sluiced))
    for tool in (lab.wrk, lab.nginx):
        if not os.access(tool, os.X_OK):
            log("bench: %s not found; run ./tools/install-deps.sh bench" % tool)
            return 2

    lab.nofile = raise_nofile(65536)
    lab.tmp = tempfile.mkdtemp(prefix="sluice-bench-")
    os.chmod(lab.tmp, 0o755)  # nginx workers run as an unprivileged user
    keep_tmp = _env_flag("BENCH_KEEP_TMP")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    results, status = [], 0
    try:
        os.chdir(ROOT)
        info = machine_info(lab, ROOT)
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        log("bench: %s; %d × %s; %d s × %d repeat(s), %d conns; scenarios: %s; temp %s"
            % (command_line(), info["nproc"], info["cpu"], settings.duration,
               settings.repeat, settings.conns, ", ".join(s.name for s in scenarios),
               lab.tmp))
        try:
            backends = {(0, 1): start_backend(lab, 0)}
        except StartError as e:
            log("bench: the backend nginx did not start: %s\n%s" % (e.reason, e.log_tail))
            return 1
        # The first seconds of load on a fresh machine state run slower; burn them
        # on the backend alone so that the first proxy measured is not penalised.
        if settings.warmup > 0:
            run_wrk(lab.wrk, backends[(0, 1)].port, 2 * settings.warmup, settings.conns,
                    settings.threads)

        start_failures = {}
        for sc in scenarios:
            if not sc.rows(proxies):
                log("%s: skipped, none of its rows is for %s"
                    % (sc.name, ", ".join(proxies)))
                continue
            try:
                res = run_scenario(lab, settings, sc, proxies, backends, start_failures)
            except StartError as e:
                raise RuntimeError("a backend nginx for %s did not start: %s\n%s"
                                   % (sc.name, e.reason, e.log_tail))
            results.append(res)
            print(scenario_section(res, proxies), flush=True)

        for p in proxies:
            ran = [r for res in results for v in res["variants"] if v.proxy == p
                   for r in res["runs"][v.key]]
            if p != "sluice" and ran and not any(r["ok"] for r in ran):
                log("bench: %s never completed a run" % PROXIES[p].label)
                status = 1

        doc = document(info, settings, command_line(), date, results, proxies, lab.nofile)
        out = os.environ.get("BENCH_OUTPUT", os.path.join(ROOT, "docs", "benchmarks.md"))
        if out != "-":
            with open(out, "w") as f:
                f.write(doc)
            log("bench: wrote %s" % out)
        if os.environ.get("BENCH_JSON"):
            raw = {"machine": info, "date": date, "command": command_line(),
                   "settings": settings.__dict__,
                   "results": [{"scenario": r["scenario"].name, "runs": r["runs"]}
                               for r in results]}
            with open(os.environ["BENCH_JSON"], "w") as f:
                json.dump(raw, f, indent=1)
    except (KeyboardInterrupt, Interrupted) as e:
        log("bench: interrupted (%s); stopping everything" % (str(e) or "SIGINT"))
        status = 130
    except (RuntimeError, WrkError, OSError) as e:
        log("bench: %s" % e)
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        stop_all()
        remove_all_pins()
        if keep_tmp:
            log("bench: configs and logs kept in %s" % lab.tmp)
        else:
            shutil.rmtree(lab.tmp, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
