#!/usr/bin/python3 -B
"""What idle connections past the open file limit cost a normal keep-alive client.

Starts a fast local backend (asyncio, its own process) and sluiced with RLIMIT_NOFILE
set to --nofile (soft = hard, so sluiced cannot raise it) on loopback, then measures --clients
keep-alive clients (connected before anything else, kept across phases; one process
each) doing GETs back to back for --seconds:

  base   the clients alone
  idle   the same while --idle connections are held open without a request (more than
         the fd limit allows: sluiced either runs out of fds or stops at its cap)

and prints, per phase: requests/s, p50 and p99 latency of the clients, sluiced's CPU time
over the phase, and how much its error log grew. --max-connections N sets
limits.max_connections (e.g. far above the fd limit, to exercise the EMFILE path).

  python3 tools/bench/fdlimit.py --sluiced build/sluiced [--nofile 1024 --idle 1100]

Everything stays on 127.0.0.1; every phase is bounded in time and count.
"""
import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HELLO = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n\r\nhello world\n"
REQ = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class _Proto(asyncio.Protocol):
    def connection_made(self, t):
        self.t, self.buf = t, b""

    def data_received(self, data):
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            _, self.buf = self.buf.split(b"\r\n\r\n", 1)
            self.t.write(HELLO)


def backend_main(port, ready):
    async def run():
        srv = await asyncio.get_running_loop().create_server(_Proto, "127.0.0.1", port,
                                                             backlog=1024)
        ready.set()
        async with srv:
            await srv.serve_forever()
    asyncio.run(run())


def client_main(port, cmd, out):
    """One keep-alive connection, opened before anything else and kept across phases;
    on each command (seconds) GETs back to back, reporting per-request latency."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    while True:
        seconds = cmd.get()
        if seconds is None:
            return
        lat, errors = [], 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            try:
                s.sendall(REQ)
                while not (b"\r\n\r\n" in buf and len(buf.split(b"\r\n\r\n", 1)[1]) >= 12):
                    d = s.recv(65536)
                    if not d:
                        raise ConnectionError("closed")
                    buf += d
                ok = buf.startswith(b"HTTP/1.1 200")
                buf = buf.split(b"\r\n\r\n", 1)[1][12:]
            except OSError:
                errors += 1
                break
            lat.append(time.perf_counter() - t0)
            errors += not ok
        out.put((lat, errors))


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(clients, seconds, pid, errlog):
    c0, s0 = cpu_seconds(pid), os.path.getsize(errlog)
    t0 = time.monotonic()
    for cmd, _ in clients:
        cmd.put(seconds)
    lat, errors = [], 0
    for _, out in clients:
        l, e = out.get(timeout=seconds + 30)
        lat += l
        errors += e
    wall = time.monotonic() - t0
    lat.sort()
    return {
        "rps": len(lat) / seconds,
        "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
        "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else float("nan"),
        "errors": errors,
        "cpu_s": cpu_seconds(pid) - c0,
        "wall_s": wall,
        "log_bytes": os.path.getsize(errlog) - s0,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sluiced", default=os.path.join(os.environ.get("SLUICE_BUILD", "build"),
                                                      "sluiced"))
    ap.add_argument("--nofile", type=int, default=1024)
    ap.add_argument("--idle", type=int, default=1100)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-connections", type=int, default=0)
    ap.add_argument("--clients", type=int, default=4,
                    help="keep-alive client connections (one process each)")
    a = ap.parse_args()
    if a.idle > 20000:
        sys.exit("--idle is capped at 20000")
    d = tempfile.mkdtemp(prefix="sl-fdlimit-")
    bport, sport = free_port(), free_port()
    ready = mp.Event()
    be = mp.Process(target=backend_main, args=(bport, ready), daemon=True)
    be.start()
    ready.wait(10)
    limits = "limits: { max_connections: %d }\n" % a.max_connections if a.max_connections else ""
    conf = os.path.join(d, "sluice.yaml")
    with open(conf, "w") as f:
        f.write("workers: %d\nlog: { level: info, error_log: stderr, access_log: off }\n"
                "timeouts: { client_header: 60s }\n%s"
                "bpf: { pin_path: /sys/fs/bpf/sluice-bench-fdlimit-%d }\n"
                "listeners: [ { address: \"127.0.0.1:%d\", routes: [ { upstream: u } ] } ]\n"
                "upstreams: { u: { servers: [ { address: \"127.0.0.1:%d\" } ] } }\n"
                % (a.workers, limits, os.getpid(), sport, bport))
    errlog = os.path.join(d, "error.log")
    n = a.nofile
    with open(errlog, "wb") as ef:
        sl = subprocess.Popen([a.sluiced, "-c", conf], stdin=subprocess.DEVNULL, stderr=ef,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE,
                                                                    (n, n)))
    held = []
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", sport), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        clients, procs = [], []
        for _ in range(a.clients):
            q = (mp.Queue(), mp.Queue())
            p = mp.Process(target=client_main, args=(sport, q[0], q[1]), daemon=True)
            p.start()
            clients.append(q)
            procs.append(p)
        measure(clients, 1, sl.pid, errlog)  # warm-up: pooled upstream connections
        base = measure(clients, a.seconds, sl.pid, errlog)
        for _ in range(a.idle):
            held.append(socket.create_connection(("127.0.0.1", sport), timeout=5))
        time.sleep(0.5)  # let sluiced take what it will
        idle = measure(clients, a.seconds, sl.pid, errlog)
        for q in clients:
            q[0].put(None)
        for p in procs:
            p.join(10)
        cap = [ln for ln in open(errlog) if 'msg="connection cap"' in ln]
        print("sluiced %s, %d workers, RLIMIT_NOFILE %d, %d idle connections, %d keep-alive "
              "clients%s" % (a.sluiced, a.workers, n, a.idle, a.clients,
                 ", max_connections %d" % a.max_connections if a.max_connections else ""))
        if cap:
            print(cap[0].split("msg=", 1)[1].strip())
        print("%-6s %9s %8s %8s %7s %7s %10s" % ("phase", "req/s", "p50 ms", "p99 ms",
                                                 "errors", "CPU s", "log bytes"))
        for name, r in (("base", base), ("idle", idle)):
            print("%-6s %9.0f %8.3f %8.3f %7d %7.2f %10d" % (
                name, r["rps"], r["p50_ms"], r["p99_ms"], r["errors"], r["cpu_s"],
                r["log_bytes"]))
        print("idle/base: rps %.2f, p99 %.2fx" % (idle["rps"] / base["rps"],
                                                 idle["p99_ms"] / base["p99_ms"]))
    finally:
        for s in held:
            s.close()
        sl.send_signal(signal.SIGINT)
        try:
            sl.wait(10)
        except subprocess.TimeoutExpired:
            sl.kill()
        be.terminate()
        shutil.rmtree("/sys/fs/bpf/sluice-bench-fdlimit-%d" % os.getpid(), ignore_errors=True)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
