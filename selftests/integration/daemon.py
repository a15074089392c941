"""Run sluiced for a test: YAML config from a dict, start, readiness, signals, logs, stop.

Every daemon is stopped at teardown (SIGTERM, then SIGKILL and a failure if it does not
exit) and its stderr is checked for sanitizer reports.
"""
import os
import shutil
import uuid
import re
import shlex
import signal
import socket
import subprocess
import time

from client import HTTPClient
from env import ASAN, SCALE, SLUICED, TIMEOUT

SANITIZER_PATTERNS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")

_PLAIN = re.compile(r"\A[A-Za-z0-9_/][A-Za-z0-9_./:\-]*\Z")
_RESERVED = {"yes", "no", "on", "off", "true", "false", "null", "y", "n", "~"}


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if _PLAIN.match(s) and s.lower() not in _RESERVED:
        return s
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\x%02x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def to_yaml(obj, indent=0):
    """Block-style YAML for dicts, lists and scalars (what a sluice config needs)."""
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        if not obj:
            return pad + "{}\n"
        for k, v in obj.items():
            key = _scalar(k)
            if isinstance(v, dict) and v:
                lines.append("%s%s:\n%s" % (pad, key, to_yaml(v, indent + 2)))
            elif isinstance(v, list) and v:
                lines.append("%s%s:\n%s" % (pad, key, to_yaml(v, indent + 2)))
            elif isinstance(v, (dict, list)):
                lines.append("%s%s: %s\n" % (pad, key, "{}" if isinstance(v, dict) else "[]"))
            else:
                lines.append("%s%s: %s\n" % (pad, key, _scalar(v)))
        return "".join(lines)
    if isinstance(obj, list):
        if not obj:
            return pad + "[]\n"
        for item in obj:
            if isinstance(item, (dict, list)) and item:
                sub = to_yaml(item, indent + 2)
                lines.append(pad + "- " + sub[indent + 2:])
            else:
                lines.append("%s- %s\n" % (pad, _scalar(item) if not isinstance(item, (dict, list))
                                           else ("{}" if isinstance(item, dict) else "[]")))
        return "".join(lines)
    return pad + _scalar(obj) + "\n"


def parse_kv(line):
    """key=value pairs of a log line; values may be double-quoted with \\ escapes."""
    out = {}
    for m in re.finditer(r'([A-Za-z_][A-Za-z0-9_.]*)=("((?:[^"\\]|\\.)*)"|\S*)', line):
        key, raw, quoted = m.group(1), m.group(2), m.group(3)
        out[key] = re.sub(r"\\(.)", r"\1", quoted) if raw.startswith('"') else raw
    return out


def wait_for(pred, timeout, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            return v
        time.sleep(interval)


def port_open(port, host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def split_address(addr):
    if addr.startswith("["):
        host, port = addr[1:].split("]:")
        return host, int(port)
    host, port = addr.rsplit(":", 1)
    return host or "127.0.0.1", int(port)


class Sluice:
    """One sluiced process, its config file and its logs."""

    def __init__(self, workdir, name="sluice"):
        self.dir = workdir
        self.name = name
        self.config_path = os.path.join(workdir, name + ".yaml")
        self.stderr_path = os.path.join(workdir, name + ".stderr")
        self.stdout_path = os.path.join(workdir, name + ".stdout")
        self.access_log = os.path.join(workdir, name + ".access.log")
        self.proc = None
        self.returncode = None
        self.listen = []  # [(host, port)]
        self.clients = []
        self.config = None
        self.pin_path = None
        self.binary = SLUICED  # or another program built on libsluice (examples/)
        self.notify = None  # our NOTIFY_SOCKET while waiting for READY=1

    # -- config ---------------------------------------------------------------------
    def write_config(self, config):
        """config: a dict (written as YAML) or YAML text. Atomic replace, like an editor."""
        if isinstance(config, dict):
            # Every daemon pins its BPF maps in a directory of its own, so tests never
            # touch the host's /sys/fs/bpf/sluice or each other's maps; removed at stop.
            bpf = dict(config.get("bpf") or {})
            if "pin_path" not in bpf:
                if not self.pin_path:
                    self.pin_path = "/sys/fs/bpf/sluice-test-%d-%s" % (os.getpid(),
                                                                      uuid.uuid4().hex[:8])
                bpf["pin_path"] = self.pin_path
                config = dict(config, bpf=bpf)
        self.config = config
        text = config if isinstance(config, str) else to_yaml(config)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)
        if isinstance(config, dict):
            self.listen = [split_address(lst["address"]) for lst in config.get("listeners", [])]
        return text

    @property
    def port(self):
        return self.listen[0][1]

    @property
    def host(self):
        return self.listen[0][0]

    # -- process ----------------------------------------------------------------------
    def start(self, config=None, wait=True, args=()):
        if config is not None:
            self.write_config(config)
        if not os.path.exists(self.binary):
            raise AssertionError("not built: %s does not exist" % self.binary)
        env = dict(os.environ)
        self._notify_close()
        if "NOTIFY_SOCKET" not in env:
            # Readiness is the daemon's own READY=1 (sd_notify), not an open port: the
            # kernel accepts into the backlog before the workers run, and loading BPF
            # under a busy CI machine has taken seconds.
            self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            name = "\0sluice-test-notify-%d-%s" % (os.getpid(), uuid.uuid4().hex[:12])
            self.notify.bind(name)
            env["NOTIFY_SOCKET"] = "@" + name[1:]
        if ASAN:
            env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
            env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.err_f = open(self.stderr_path, "ab")
        self.out_f = open(self.stdout_path, "ab")
        self.argv = [self.binary, "-c", self.config_path] + list(args)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.out_f,
                                     stderr=self.err_f, env=env, cwd=self.dir)
        self.returncode = None
        if wait:
            self.wait_ready()
        return self

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _notify_close(self):
        if getattr(self, "notify", None) is not None:
            self.notify.close()
        self.notify = None

    def _wait_notify_ready(self, deadline, timeout):
        """Until the daemon says READY=1 on our notification socket (then it is closed:
        later notifications fail in the daemon, which ignores them)."""
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("sluiced exited with %s before it was ready; stderr:\n%s"
                                     % (self.proc.returncode, self.stderr()))
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("sluiced did not notify READY=1 within %ss; stderr:\n%s"
                                     % (timeout, self.stderr()))
            self.notify.settimeout(min(left, 0.1))
            try:
                msg = self.notify.recv(4096)
            except socket.timeout:
                continue
            if b"READY=1" in msg.split(b"\n"):
                self._notify_close()
                return

    def wait_ready(self, timeout=15 * SCALE):
        """Until the daemon notifies READY=1 (when the harness owns NOTIFY_SOCKET) and
        every listener accepts."""
        deadline = time.monotonic() + timeout
        if getattr(self, "notify", None) is not None:
            self._wait_notify_ready(deadline, timeout)
        pending = list(self.listen)
        while pending:
            if self.proc.poll() is not None:
                raise AssertionError("sluiced exited with %s before it was ready; stderr:\n%s"
                                     % (self.proc.returncode, self.stderr()))
            if port_open(pending[0][1], pending[0][0]):
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise AssertionError("sluiced did not accept on %s:%d within %ss; stderr:\n%s"
                                     % (pending[0][0], pending[0][1], timeout, self.stderr()))
            time.sleep(0.02)

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """Exit status, or None if still running after timeout."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def reload(self, config):
        self.write_config(config)
        self.send_signal(signal.SIGHUP)

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Stop it; returns a list of problems (empty when all went well)."""
        problems = []
        for c in self.clients:
            c.close()
        self.clients = []
        if self.proc is None:
            return problems
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            rc = self.wait_exit(timeout or 15 * SCALE)
            if rc is None:
                self.proc.kill()
                self.proc.wait(10)
                problems.append("sluiced did not exit within %ss of signal %d; killed" %
                                (timeout or 15 * SCALE, sig))
            elif rc != 0:
                problems.append("sluiced exited with status %d on signal %d" % (rc, sig))
        elif self.returncode is None:  # nobody asked it to go: it died on its own
            self.returncode = self.proc.returncode
            problems.append("sluiced exited by itself during the test with status %d"
                            % self.returncode)
        self._notify_close()
        for f in (self.err_f, self.out_f):
            f.close()
        if self.pin_path:
            shutil.rmtree(self.pin_path, ignore_errors=True)
        problems += self.sanitizer_problems()
        return problems

    def sanitizer_problems(self):
        text = self.stderr()
        bad = [ln for ln in text.splitlines() if any(p in ln for p in SANITIZER_PATTERNS)]
        if bad:
            return ["sanitizer report in sluiced stderr:\n" + text[-8000:]]
        return []

    # -- logs -------------------------------------------------------------------------
    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stdout(self):
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_lines(self):
        return self.stderr().splitlines()

    def wait_log(self, pred, timeout=5 * SCALE):
        """First error-log line for which pred(line) is true, or None."""
        def find():
            for ln in self.log_lines():
                if pred(ln):
                    return ln
            return None
        return wait_for(find, timeout)

    def access_lines(self):
        try:
            with open(self.access_log, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return []
        return [ln for ln in text.splitlines() if ln.strip()]

    def access_entries(self):
        return [parse_kv(ln) for ln in self.access_lines()]

    def wait_access(self, n, timeout=5 * SCALE):
        """At least n access log entries (it is flushed once a second)."""
        wait_for(lambda: len(self.access_lines()) >= n, timeout)
        return self.access_entries()

    # -- clients ----------------------------------------------------------------------
    def client(self, timeout=None, listener=0):
        host, port = self.listen[listener]
        c = HTTPClient(port, host, timeout=timeout or TIMEOUT)
        self.clients.append(c)
        return c

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def describe(self):
        return "sluiced pid %s: %s" % (self.proc.pid if self.proc else "-",
                                       " ".join(map(shlex.quote, getattr(self, "argv", []))))


def base_config(port, routes, upstreams=None, workers=1, access_log=None, host="127.0.0.1",
                **sections):
    """A complete config: one listener on host:port with these routes. Extra sections
    (timeouts=, limits=, forwarded=, shutdown=, log=) are merged over the defaults."""
    addr = ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)
    cfg = {
        "workers": workers,
        "log": {"level": "info", "error_log": "stderr", "access_log": access_log or "off"},
        "shutdown": {"grace": "5s"},
    }
    for k, v in sections.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = dict(cfg[k], **v)
        else:
            cfg[k] = v
    cfg["listeners"] = [{"address": addr, "routes": routes}]
    if upstreams:
        cfg["upstreams"] = upstreams
    return cfg


def servers_of(backends):
    """upstream servers list from Backends, addresses, or (backend, weight) pairs."""
    out = []
    for b in backends:
        weight = None
        if isinstance(b, tuple):
            b, weight = b
        addr = b if isinstance(b, str) else b.address
        s = {"address": addr}
        if weight is not None:
            s["weight"] = weight
        out.append(s)
    return out
