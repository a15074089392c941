"""Load generation with wrk, and reading counters: the backend's stub_status, the
accept queues of listening sockets (ss), sluice's admin API and BPF maps (bpftool)."""
import json
import os
import re
import signal
import subprocess

from procs import http_get, unix_json

# wrk prints times as e.g. 636.83us, 1.05ms, 2.00s, 1.50m
_TIME_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}
_NUM_UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}


class WrkError(Exception):
    pass


def _ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError("bad wrk time %r" % text)
    return float(m.group(1)) * _TIME_UNITS_MS[m.group(2)]


def parse_wrk(text):
    """Figures from wrk's --latency output.

    Returns dict: requests, seconds, rps, p50_ms, p75_ms, p90_ms, p99_ms,
    errors {connect, read, write, timeout}, non2xx."""
    out = {"errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}, "non2xx": 0}
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", text, re.M)
    if not m:
        raise WrkError("no 'N requests in' line in wrk output")
    out["requests"] = int(m.group(1))
    out["seconds"] = _ms(m.group(2) + m.group(3)) / 1000.0
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if not m:
        raise WrkError("no 'Requests/sec' line in wrk output")
    out["rps"] = float(m.group(1))
    for pct in ("50", "75", "90", "99"):
        m = re.search(r"^\s+%s(?:\.0+)?%%\s+([\d.]+(?:us|ms|s|m|h))" % pct, text, re.M)
        out["p%s_ms" % pct] = _ms(m.group(1)) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    return out


def _wrk_argv(wrk, port, duration, conns, threads, headers, path, timeout_s, scheme="http"):
    argv = [wrk, "-t%d" % threads, "-c%d" % conns, "-d%ds" % duration,
            "--timeout", "%ds" % timeout_s, "--latency"]
    for h in headers:
        argv += ["-H", h]
    argv.append("%s://127.0.0.1:%d%s" % (scheme, port, path))
    return argv


def _pin_to(cpu):
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def run_wrk(wrk, port, duration, conns, threads=1, headers=(), path="/", timeout_s=2,
            scheme="http"):
    """Run wrk against 127.0.0.1:port for `duration` seconds; (parsed, raw output)."""
    argv = _wrk_argv(wrk, port, duration, conns, threads, headers, path, timeout_s, scheme)
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=duration + 60)
    except subprocess.TimeoutExpired:
        raise WrkError("wrk did not finish within %ds" % (duration + 60))
    raw = p.stdout + p.stderr
    if p.returncode != 0:
        raise WrkError("wrk exited with status %d: %s" % (p.returncode, raw.strip()[-300:]))
    return parse_wrk(raw), raw


def spawn_wrk(wrk, port, duration, conns, threads=1, headers=(), path="/", timeout_s=2):
    """wrk started in the background (its output on a pipe): for loads that end when the
    caller has seen enough (stop_wrk), not after a fixed time."""
    argv = _wrk_argv(wrk, port, duration, conns, threads, headers, path, timeout_s)
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def stop_wrk(p, timeout=10):
    """SIGINT (wrk then prints its summary) and wait; (parsed or None, raw output)."""
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    try:
        return parse_wrk(out), out
    except (WrkError, ValueError):
        return None, out


def run_wrk_split(wrk, port, duration, conns, threads=1, headers=(), cpus=(0, 1),
                  path="/", timeout_s=2, scheme="http"):
    """One wrk per CPU in `cpus`, each pinned to it, the connections shared out: the
    clients' SYNs then reach the proxy from every CPU, as a NIC's RSS spreads them.
    Returns (merged, raw): requests, rps and errors summed; each latency percentile is
    the higher of the processes' (an upper bound, not the percentile of the whole)."""
    cpus = list(cpus)
    shares = [conns // len(cpus) + (1 if i < conns % len(cpus) else 0)
              for i in range(len(cpus))]
    procs = []
    try:
        for cpu, n in zip(cpus, shares):
            if n == 0:
                continue
            argv = _wrk_argv(wrk, port, duration, n, min(threads, n), headers, path,
                             timeout_s, scheme)
            procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True, preexec_fn=_pin_to(cpu)))
        outs = []
        for p in procs:
            try:
                out, _ = p.communicate(timeout=duration + 60)
            except subprocess.TimeoutExpired:
                raise WrkError("wrk did not finish within %ds" % (duration + 60))
            if p.returncode != 0:
                raise WrkError("wrk exited with status %d: %s"
                               % (p.returncode, out.strip()[-300:]))
            outs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    parsed = [parse_wrk(o) for o in outs]
    merged = {"requests": sum(x["requests"] for x in parsed),
              "seconds": max(x["seconds"] for x in parsed),
              "rps": sum(x["rps"] for x in parsed),
              "non2xx": sum(x["non2xx"] for x in parsed),
              "errors": {k: sum(x["errors"][k] for x in parsed)
                         for k in ("connect", "read", "write", "timeout")}}
    for pct in ("50", "75", "90", "99"):
        vals = [x["p%s_ms" % pct] for x in parsed if x["p%s_ms" % pct] is not None]
        merged["p%s_ms" % pct] = max(vals) if vals else None
    return merged, "\n".join(outs)


def stub_counters(status_port):
    """(accepts, requests) from an nginx stub_status page. The GET itself opens one
    connection and makes one request, which the figures it returns already include."""
    status, body = http_get(status_port, "/", timeout=5.0)
    if status != 200:
        raise RuntimeError("stub_status answered HTTP %d" % status)
    # Active connections: 1 \nserver accepts handled requests\n 16 16 16 \n...
    fields = body.decode().splitlines()[2].split()
    return int(fields[0]), int(fields[2])


def listener_queues(port):
    """{socket inode: accept queue length} of the sockets listening on 127.0.0.1:port
    (one per worker with SO_REUSEPORT). For a listening socket ss's Recv-Q is the
    number of established connections waiting to be accepted."""
    p = subprocess.run(["ss", "-ltnHe", "sport = :%d" % port], capture_output=True,
                       text=True, timeout=10)
    out = {}
    for line in p.stdout.splitlines():
        f = line.split()
        m = re.search(r"\bino:(\d+)", line)
        if len(f) >= 2 and m:
            out[int(m.group(1))] = int(f[1])
    return out


def sluice_workers(admin_socket):
    """GET /workers from sluice's admin API: [{id, accepted, requests, ...}]."""
    return unix_json(admin_socket, "GET", "/workers")


STEER_REASONS = ("own_cpu", "p2c_overloaded", "p2c_stalled", "p2c_draining",
                 "kernel_hash", "migrated", "p2c_loaded", "p2c_no_local")


def steer_stats(pin_path, bpftool="bpftool"):
    """{reason: count summed over CPUs} from the pinned steer_stats map, or None when
    it is not there (steering off) or bpftool is missing."""
    path = os.path.join(pin_path or "", "steer_stats")
    if not pin_path or not os.path.exists(path):
        return None
    try:
        p = subprocess.run([bpftool, "map", "dump", "pinned", path, "-j"],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    out = {}
    for entry in json.loads(p.stdout):
        f = entry.get("formatted", {})
        key = f.get("key")
        if key is None:
            key = int.from_bytes(bytes(int(b, 16) for b in entry["key"]), "little")
        if "values" in f:
            total = sum(v["value"] for v in f["values"])
        else:
            total = sum(int.from_bytes(bytes(int(b, 16) for b in v["value"]), "little")
                        for v in entry["values"])
        if 0 <= key < len(STEER_REASONS):
            out[STEER_REASONS[key]] = total
    return out
