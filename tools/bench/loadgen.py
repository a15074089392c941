"""Load generation with wrk and reading the backend's stub_status counter."""
import re
import subprocess

from procs import http_get

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


def run_wrk(wrk, port, duration, conns, threads=1, headers=(), path="/", timeout_s=2):
    """Run wrk against 127.0.0.1:port for `duration` seconds; (parsed, raw output)."""
    argv = [wrk, "-t%d" % threads, "-c%d" % conns, "-d%ds" % duration,
            "--timeout", "%ds" % timeout_s, "--latency"]
    for h in headers:
        argv += ["-H", h]
    argv.append("http://127.0.0.1:%d%s" % (port, path))
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=duration + 60)
    except subprocess.TimeoutExpired:
        raise WrkError("wrk did not finish within %ds" % (duration + 60))
    raw = p.stdout + p.stderr
    if p.returncode != 0:
        raise WrkError("wrk exited with status %d: %s" % (p.returncode, raw.strip()[-300:]))
    return parse_wrk(raw), raw


def stub_counters(status_port):
    """(accepts, requests) from an nginx stub_status page. The GET itself opens one
    connection and makes one request, which the figures it returns already include."""
    status, body = http_get(status_port, "/", timeout=5.0)
    if status != 200:
        raise RuntimeError("stub_status answered HTTP %d" % status)
    # Active connections: 1 \nserver accepts handled requests\n 16 16 16 \n...
    fields = body.decode().splitlines()[2].split()
    return int(fields[0]), int(fields[2])
