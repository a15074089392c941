"""Child processes of the benchmark: start, wait until ready, measure, stop.

Every child is started in its own session (so a Ctrl-C on the terminal reaches only
bench.py, which then stops them in order) and is recorded in a registry; stop_all()
ends every child still running, whatever happened before. Nothing here touches a
process this harness did not start.
"""
import http.client
import json
import os
import resource
import signal
import socket
import ssl
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")

_children = []       # every Child started, for stop_all()
_ports_given = set()  # ports handed out by free_port(), never given twice


class StartError(Exception):
    """A server did not start: reason is one line, log_tail the end of its output."""

    def __init__(self, reason, log_tail=""):
        super().__init__(reason)
        self.reason = reason
        self.log_tail = log_tail


def raise_nofile(want=65536):
    """Raise RLIMIT_NOFILE (soft, and hard when allowed) for us and our children.

    Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    inf = resource.RLIM_INFINITY
    if soft != inf and soft < want:
        new_hard = hard if hard == inf or hard >= want else want
        for lim in ((want, new_hard), (min(want, hard) if hard != inf else want, hard)):
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, lim)
                break
            except (ValueError, OSError):
                continue
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return want if soft == inf else soft


def free_port():
    """A loopback TCP port nobody listens on now (and not handed out before)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise RuntimeError("no free loopback port")


# ---------------------------------------------------------------- /proc readers

def _stat_fields(pid):
    """Fields 3.. of /proc/PID/stat (after the parenthesised command name)."""
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    return data[data.rindex(")") + 2:].split()


def process_tree(pid):
    """pid and all its descendants that exist now (threads are not processes)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(d))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        if os.path.exists("/proc/%d" % p):
            out.append(p)
        todo.extend(children.get(p, []))
    return sorted(out)


def cpu_ticks(pids):
    """{pid: utime+stime in clock ticks} (stat fields 14 and 15; a process's figure
    already includes all its threads). Processes that vanished are left out."""
    out = {}
    for pid in pids:
        try:
            f = _stat_fields(pid)
            out[pid] = int(f[11]) + int(f[12])
        except (OSError, ValueError, IndexError):
            pass
    return out


def cpu_delta_seconds(before, after):
    """CPU seconds used between two cpu_ticks() readings. A process present only in
    `after` (started during the load) counts whole; one that exited is lost."""
    ticks = sum(t - before.get(pid, 0) for pid, t in after.items())
    return ticks / CLK_TCK


def rss_kib(pids):
    """VmRSS summed over pids, in KiB."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except (OSError, ValueError):
            pass
    return total


# ---------------------------------------------------------------- children

class Child:
    """One started server. Output (stdout+stderr) goes to LOGDIR/NAME.out."""

    def __init__(self, name, argv, logdir, stop_signal=signal.SIGTERM, cwd=None):
        self.name = name
        self.argv = argv
        self.stop_signal = stop_signal
        self.log_path = os.path.join(logdir, name + ".out")
        with open(self.log_path, "wb") as log:
            # Popen raises OSError (e.g. FileNotFoundError) if argv[0] cannot run.
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=cwd,
                                         start_new_session=True)
        self.pid = self.proc.pid
        self.meta = {}   # what the start function knows about it (admin socket...)
        _children.append(self)

    def alive(self):
        return self.proc.poll() is None

    def exit_reason(self):
        rc = self.proc.poll()
        if rc is None:
            return "still running"
        if rc < 0:
            try:
                return "killed by signal %s" % signal.Signals(-rc).name
            except ValueError:
                return "killed by signal %d" % -rc
        return "exited with status %d" % rc

    def pids(self):
        """The process and its descendants (nginx: master + workers)."""
        return process_tree(self.pid) if self.alive() else []

    def log_tail(self, lines=15):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def stop(self, timeout=5.0):
        """stop_signal, then SIGKILL to the whole process group if still there."""
        if self.alive():
            try:
                os.kill(self.pid, self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # The group is ours (start_new_session): also catches orphaned workers.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(2)
        except subprocess.TimeoutExpired:
            pass
        if self in _children:
            _children.remove(self)


def stop_all():
    """Stop every child still registered, newest first."""
    for child in reversed(list(_children)):
        try:
            child.stop(timeout=3.0)
        except Exception:  # keep going: the others must be stopped too
            pass


def http_get(port, path="/", timeout=2.0, headers=None, tls=False):
    """(status, body) of one GET to 127.0.0.1:port on a fresh connection (over TLS,
    certificate not checked: the benchmark's own throwaway one)."""
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def unix_http(path, method, target, timeout=5.0):
    """(status, body) of one request to an HTTP server on the Unix socket `path`."""
    conn = _UnixHTTPConnection(path, timeout)
    try:
        conn.request(method, target)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def unix_json(path, method, target, timeout=5.0):
    """The JSON a 200 answer carries; RuntimeError on any other status."""
    status, body = unix_http(path, method, target, timeout)
    if status != 200:
        raise RuntimeError("%s %s on %s: HTTP %d %s"
                           % (method, target, path, status, body[:200].decode(errors="replace")))
    return json.loads(body)


def wait_unix_ready(child, path, timeout=10.0, target="/healthz"):
    """Wait until GET `target` on the Unix socket `path` answers 200."""
    deadline = time.monotonic() + timeout
    last = "socket %s never answered" % path
    while time.monotonic() < deadline:
        if not child.alive():
            raise StartError(child.exit_reason(), child.log_tail())
        try:
            status, _ = unix_http(path, "GET", target, timeout=1.0)
            if status == 200:
                return
            last = "%s answers HTTP %d" % (target, status)
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.05)
    raise StartError("admin API not ready after %gs: %s" % (timeout, last), child.log_tail())


def wait_http_ready(child, port, timeout=10.0, path="/", tls=False):
    """Wait until GET http://127.0.0.1:port/ answers 200 through the server.

    Raises StartError if the child exits, or does not answer 200 in time."""
    deadline = time.monotonic() + timeout
    last = "never accepted a connection on port %d" % port
    while time.monotonic() < deadline:
        if not child.alive():
            raise StartError(child.exit_reason(), child.log_tail())
        try:
            status, _ = http_get(port, path, timeout=1.0, tls=tls)
            if status == 200:
                return
            last = "answers HTTP %d instead of 200" % status
        except ConnectionRefusedError:
            pass
        except (OSError, http.client.HTTPException) as e:
            last = "accepts but the request failed: %s" % (e.__class__.__name__ + (": %s" % e if str(e) else ""))
        time.sleep(0.05)
    raise StartError("not ready after %gs: %s" % (timeout, last), child.log_tail())
