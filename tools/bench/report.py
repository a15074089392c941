"""Tables (markdown) and docs/benchmarks.md from the results of a benchmark run.

A result, per scenario: {"scenario": Scenario, "variants": [Variant, ...] (the rows),
"runs": {variant key: [run, ...]}} where a run is {"ok": True, "metrics": {...}} or
{"ok": False, "start_failed": bool, "error": "...", "log_tail": "..."}.
"""
import os
import platform
import re
import statistics
import subprocess

from servers import NGINX_KEEPALIVE, SLUICE_KEEPALIVE, haproxy_maxconn

def _first_line(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "unavailable (%s)" % e.__class__.__name__
    text = (p.stdout + p.stderr).strip()
    return text.splitlines()[0].strip() if text else "unknown"


def machine_info(lab, root):
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Model", "cpu model")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    wrk = _first_line([lab.wrk, "-v"])
    wrk = re.sub(r"\s+Copyright.*", "", wrk)
    git = _first_line(["git", "-C", root, "describe", "--always", "--dirty"])
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "kernel": "%s %s" % (platform.system(), platform.release()),
        "nginx": _first_line([lab.nginx, "-v"]),
        "haproxy": _first_line([lab.haproxy, "-v"]),
        "wrk": wrk,
        "git": git,
        "sluiced": os.path.relpath(lab.sluiced, root)
        if os.path.abspath(lab.sluiced).startswith(root + os.sep) else lab.sluiced,
    }


# ---------------------------------------------------------------- numbers

def medians(runs, columns):
    """{key: median over successful runs} (None where no run has the value)."""
    ok = [r["metrics"] for r in runs if r["ok"]]
    out = {}
    for col in columns:
        vals = [m[col.key] for m in ok if m.get(col.key) is not None]
        out[col.key] = statistics.median(vals) if vals else None
    return out


def _fmt(col, v):
    return "–" if v is None else col.fmt.format(v)


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return "%.2f×" % (a / b)


def _failure_label(runs):
    if any(r.get("start_failed") for r in runs):
        return "failed to start"
    return "failed"


def scenario_table(result, proxies):
    """The markdown table of one scenario: a row per variant, then ratio rows."""
    sc = result["scenario"]
    cols = sc.columns
    lines = ["| proxy | " + " | ".join(c.header for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    med = {}
    for v in result["variants"]:
        runs = result["runs"].get(v.key, [])
        if not runs:
            continue
        if not any(r["ok"] for r in runs):
            lines.append("| %s | %s |%s" % (v.label, _failure_label(runs),
                                              " – |" * (len(cols) - 1)))
            continue
        med[v.key] = medians(runs, cols)
        lines.append("| %s | " % v.label
                     + " | ".join(_fmt(c, med[v.key][c.key]) for c in cols) + " |")
    keys = {v.key for v in result["variants"]}
    for num, den, label in sc.ratios:
        if num not in keys or den not in keys:
            continue
        a, b = med.get(num, {}), med.get(den, {})
        lines.append("| %s | " % label
                     + " | ".join(_ratio(a.get(c.key), b.get(c.key)) for c in cols) + " |")
    return "\n".join(lines)


def scenario_notes(result, proxies):
    """Bullet lines under a table: failures, wrk errors, per-run figures."""
    notes = []
    for v in result["variants"]:
        label = v.label
        runs = result["runs"].get(v.key, [])
        ok = [r for r in runs if r["ok"]]
        reasons = []
        for r in runs:
            if not r["ok"] and r["error"] not in reasons:
                reasons.append(r["error"])
        for reason in reasons:
            notes.append("%s: %s%s" % (label, "failed to start: " if any(
                r.get("start_failed") and r["error"] == reason for r in runs) else "",
                reason))
        for i, r in enumerate(runs, 1):
            if not r["ok"]:
                continue
            m = r["metrics"]
            errs = {k: n for k, n in m.get("errors", {}).items() if n}
            if errs or m.get("non2xx"):
                bits = []
                if errs:
                    bits.append("socket errors " + ", ".join("%s %d" % kv for kv in errs.items()))
                if m.get("non2xx"):
                    bits.append("non-2xx/3xx responses %d" % m["non2xx"])
                notes.append("%s run %d: wrk reported %s" % (label, i, "; ".join(bits)))
        if ok and "cpu_us_per_req" in ok[0]["metrics"]:
            notes.append("%s per run (%d of %d ok): CPU µs/req %s; rps %s; backend CPU µs/req %s"
                         % (label, len(ok), len(runs),
                            ", ".join("%.1f" % r["metrics"]["cpu_us_per_req"] for r in ok),
                            ", ".join("%.0f" % r["metrics"]["rps"] for r in ok),
                            ", ".join("%.1f" % r["metrics"]["backend_cpu_us_per_req"]
                                      for r in ok)))
    if sc_notes(result):
        notes += sc_notes(result)
    return notes


def sc_notes(result):
    fn = result["scenario"].notes
    return fn(result) if fn else []


def _verdict(v):
    return {True: "**met**", False: "**not met**", None: "not measured"}[v]


def bar_lines(result):
    """(text, verdict) of every acceptance bar of a scenario."""
    out = []
    for fn in result["scenario"].bars:
        out += fn(result)
    return out


def scenario_section(result, proxies, level="###"):
    sc = result["scenario"]
    out = ["%s %s (`%s`)" % (level, sc.title, sc.name), "", sc.description, "",
           scenario_table(result, proxies), ""]
    bars = bar_lines(result)
    if bars:
        out += ["Bar:", ""] + ["- %s: %s" % (_verdict(v), t) for t, v in bars] + [""]
    notes = scenario_notes(result, proxies)
    if notes:
        out += ["- " + n.replace("\n", " ") for n in notes] + [""]
    return "\n".join(out)


def failure_logs(results, proxies):
    """The log tail of the first failed start of each proxy, for the report."""
    seen, out = set(), []
    for res in results:
        for v in res["variants"]:
            for r in res["runs"].get(v.key, []):
                if not r["ok"] and r.get("log_tail") and v.proxy not in seen:
                    seen.add(v.proxy)
                    out.append("%s (%s):\n\n```\n%s\n```\n"
                               % (v.label, r["error"], r["log_tail"]))
    return out


def document(info, settings, command, date, results, proxies, nofile):
    s = settings
    parts = ["# Benchmarks", "",
             "Generated by `make bench` (tools/bench/bench.py); a new run overwrites this "
             "file. Absolute figures move between machines and minutes: read the ratios, "
             "which come from one run with the proxies interleaved.", "",
             "## Machine and run", "",
             "- Date: %s" % date,
             "- Command: `%s`" % command,
             "- CPU: %d × %s" % (info["nproc"], info["cpu"]),
             "- Kernel: %s" % info["kernel"],
             "- nginx: `%s`" % info["nginx"],
             "- HAProxy: `%s`" % info["haproxy"],
             "- wrk: `%s`" % info["wrk"],
             "- sluice: `%s` at commit `%s`" % (info["sluiced"], info["git"]),
             "- Settings: %d s per run after a %d s warm-up, %d repeat(s), %d client "
             "connections, %d wrk thread(s), fd limit %d%s"
             % (s.duration, s.warmup, s.repeat, s.conns, s.threads, nofile,
                " (quick mode: smoke test, not a measurement)" if s.quick else ""),
             "",
             "## Method", "",
             "- Backend: one nginx worker answering `200 \"hello world\\n\"`, access log off, "
             "`keepalive_requests 1000000`; a second `server` with `stub_status`.",
             "- Proxies, each with access logs off and the same worker count: sluice "
             "(`workers: N`, upstream `keepalive: %d`, otherwise its defaults); nginx "
             "(`worker_processes N`, `proxy_http_version 1.1`, `proxy_set_header Connection "
             "\"\"`, upstream `keepalive %d`, client `keepalive_requests 1000000`); HAProxy "
             "(`nbthread N`, `mode http`, `http-reuse always`, maxconn %d)."
             % (SLUICE_KEEPALIVE, NGINX_KEEPALIVE, haproxy_maxconn(nofile)),
             "- nginx's upstream `keepalive` matches sluice's: with `keepalive 32` and 50 "
             "clients on one worker, nginx closes and reopens ~200 upstream connections "
             "per 1000 requests and spends ~50% more CPU per request. Its upstream "
             "`keepalive_requests` stays at the default 1000, hence ~1 upstream "
             "connection per 1000 requests. The upstream pool scenarios (`pool-*`) are the "
             "exception: there nginx has `keepalive 32` per worker, as the issue that asked "
             "for them says.",
             "- Each run starts the proxy afresh, waits until a GET through it answers 200, "
             "warms up, then runs `wrk -t%d -c%d -d%ds --latency` against it (scenarios "
             "that spread the clients run one wrk per CPU, pinned there, sharing the "
             "connections: their p50/p99 are the higher of the two processes'; "
             "`steer-stall` has its own load, see there). Runs are interleaved (sluice, "
             "nginx, HAProxy, sluice, …); tables show medians."
             % (s.threads, s.conns, s.duration),
             "- rps, p50 and p99 come from wrk. CPU µs/req: utime+stime from "
             "`/proc/PID/stat` of the proxy's processes (nginx master and workers) before "
             "and after the load, divided by the requests wrk completed. RSS: VmRSS summed "
             "over those processes after the load (it includes what nginx and HAProxy "
             "preallocate for their connection limits). Upstream conns/1k req: the backend's "
             "stub_status `accepts` delta (less the status requests) per 1000 requests.",
             "- Ratios are sluice's median over the other's: above 1 is better for rps, "
             "below 1 is better for every other column.",
             "- Everything shares the same cores (wrk, proxy, backend); CPU per request is "
             "the steadiest figure, requests/s the least.",
             "- Every sluiced pins its BPF maps in a private directory under /sys/fs/bpf "
             "(removed after the run), never the default /sys/fs/bpf/sluice; steering is "
             "sluiced's default (`auto`) unless a row says otherwise.",
             "- The steering scenarios compare sluice with steering on and off (ratio row "
             "on/off). Where an issue set a bar, it is checked from this run's figures (the "
             "medians, or the worst run for the pool and \"no connection lands\" bars) and "
             "marked met or not met under the table and in \"Bars\" at the end.",
             "",
             "## Results", ""]
    bars = []
    for res in results:
        parts.append(scenario_section(res, proxies))
        bars += [(res["scenario"].name, t, v) for t, v in bar_lines(res)]
    if bars:
        parts += ["## Bars", ""] + ["- `%s`: %s: %s" % (n, _verdict(v), t)
                                    for n, t, v in bars] + [""]
    logs = failure_logs(results, proxies)
    if logs:
        parts += ["## Start failures", ""] + logs
    return "\n".join(parts).rstrip() + "\n"
