#!/usr/bin/python3 -B
"""Hostile clients next to a normal one: what slowloris and slow readers cost a
well-behaved keep-alive client of sluiced, and whether sluiced cuts them off.

Starts a fast local backend (asyncio, its own process) and sluiced (2 workers,
$SLUICE_BUILD/sluiced, default build/) on loopback, then runs three phases:

  base       the normal client alone: keep-alive GETs back to back for --seconds
  slowloris  the same while --slow connections dribble a request head, one byte
             every ~1 s, never finishing it; each one sluiced cuts (408 or close
             at timeouts.client_header) reconnects, as an attacker would
  readers    the same while --readers connections ask for a --big-byte response
             and never read it; sluiced must drop them at the send timeout
             (timeouts.client_body); afterwards each drains what it was sent and
             counts as cut when that is short of the whole body

and prints one table: rps, p50, p99 and max of the normal client per phase (and
when in the phase the max happened), the p99 ratio to the base phase of the same
round, sluiced's CPU seconds per second, medians over --repeat rounds; then what
the hostile clients saw and sluiced's own counters (admin /workers: errors_client,
4xx, active connections). Exit status 1 if sluiced died, or kept a slow connection.

  SLUICE_BUILD=build python3 tools/bench/hostile.py [--seconds 10] [--slow 5000]
      [--readers 50] [--repeat 3]

The attacker (one epoll loop) runs at nice 10 and the normal client in its own
process; on a small shared machine their CPU use and the neighbours' still show in
the figures, so compare the rounds, not one row.

Everything stays on 127.0.0.0/8; every phase is bounded in time and count.
"""
import argparse
import asyncio
import errno
import multiprocessing as mp
import os
import queue
import random
import resource
import select
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from procs import Child, StartError, free_port, raise_nofile, stop_all, unix_json  # noqa: E402
from procs import cpu_delta_seconds, cpu_ticks, wait_http_ready, wait_unix_ready  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HELLO = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n\r\nhello world\n"


# ------------------------------------------------------------------ backend

class _BackendProto(asyncio.Protocol):
    """GET-only HTTP/1.1: "hello world" for any path, /big?n=N streams N bytes with
    flow control (never more than one chunk buffered in user space)."""
    CHUNK = bytes(256 * 1024)

    def connection_made(self, transport):
        self.t = transport
        self.buf = b""
        self.left = 0
        self.paused = False
        transport.set_write_buffer_limits(high=512 * 1024)

    def data_received(self, data):
        self.buf += data
        while not self.left:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head, self.buf = self.buf[:i], self.buf[i + 4:]
            target = head.split(b" ", 2)[1] if b" " in head else b"/"
            if target.startswith(b"/big?n="):
                self.left = int(target[7:])
                self.t.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.left)
                self._pump()
            else:
                self.t.write(HELLO)

    def _pump(self):
        while self.left and not self.paused:
            n = min(self.left, len(self.CHUNK))
            self.left -= n
            self.t.write(self.CHUNK[:n])
        if not self.left and self.buf:
            self.data_received(b"")

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        self._pump()


def backend_main(port, ready):
    async def run():
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(_BackendProto, "127.0.0.1", port, backlog=1024)
        ready.set()
        async with srv:
            await srv.serve_forever()
    asyncio.run(run())


# ------------------------------------------------------------------ normal client

def normal_client(port, seconds, out):
    """Keep-alive GET / back to back on one connection; per-request latency."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    lat, errors, buf = [], 0, b""
    start = time.perf_counter()
    end = time.monotonic() + seconds
    worst = (0.0, 0.0)  # (latency, when in the phase)
    while True:
        t0 = time.perf_counter()
        if t0 > end:
            break
        try:
            s.sendall(req)
            while True:
                i = buf.find(b"\r\n\r\n")
                if i >= 0:
                    cl = 0
                    for ln in buf[:i].split(b"\r\n")[1:]:
                        if ln[:15].lower() == b"content-length:":
                            cl = int(ln[15:])
                    if len(buf) >= i + 4 + cl:
                        ok = buf.startswith(b"HTTP/1.1 200")
                        buf = buf[i + 4 + cl:]
                        break
                d = s.recv(65536)
                if not d:
                    raise ConnectionError("closed")
                buf += d
        except (OSError, ValueError):
            errors += 1
            s.close()
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            buf = b""
            continue
        lat.append(time.perf_counter() - t0)
        if lat[-1] > worst[0]:
            worst = (lat[-1], t0 - start)
        if not ok:
            errors += 1
    s.close()
    out.put((lat, errors, worst))


def run_normal(port, seconds, nclients, poll=None, pid=None):
    """Run the normal clients; poll() is called every 0.1 s meanwhile. pid: sluiced,
    whose CPU use over the phase is reported."""
    cpu0 = cpu_ticks([pid]) if pid else {}
    q = mp.Queue()
    procs = [mp.Process(target=normal_client, args=(port, seconds, q)) for _ in range(nclients)]
    for p in procs:
        p.start()
    lat, errors, got, worst = [], 0, 0, (0.0, 0.0)
    deadline = time.monotonic() + seconds + 60
    while got < nclients and time.monotonic() < deadline:
        if poll:
            poll()
        try:
            ls, e, w = q.get(timeout=0.1)
        except queue.Empty:
            continue
        got += 1
        worst = max(worst, w)
        lat += ls
        errors += e
    for p in procs:
        p.join(10)
    lat.sort()

    def pct(x):
        return lat[min(len(lat) - 1, int(x * len(lat)))] * 1e3 if lat else float("nan")
    cpu = cpu_delta_seconds(cpu0, cpu_ticks([pid])) / seconds if pid else float("nan")
    return {"requests": len(lat), "rps": len(lat) / seconds, "cpu": cpu,
            "max_at_s": worst[1], "p50_ms": pct(0.50),
            "p99_ms": pct(0.99), "max_ms": lat[-1] * 1e3 if lat else float("nan"),
            "errors": errors}


# ------------------------------------------------------------------ slowloris

def slowloris_main(port, n, interval, ready, stop, out, first_index=0):
    """n connections, each dribbling a head that never ends; reconnects when cut.
    One epoll loop (asyncio costs ~10x the CPU per dribbled byte), at nice 10 so that
    on a small machine the attack costs the normal client less CPU than sluiced does."""
    os.nice(10)
    st = {"connects": 0, "cut_408": 0, "cut_close": 0, "cut_reset": 0, "connect_err": 0,
          "cut_after_s": []}
    head = b"GET / HTTP/1.1\r\nHost: bench\r\nX-Slow: " + b"a" * 100000
    ep = select.epoll()
    conns = {}  # fd -> [sock, index, t_connected or None, bytes sent, bytes got]
    slots = [[] for _ in range(20)]  # each tick feeds one slot: a byte per interval each
    tick = interval / len(slots)

    def open_one(i):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind(("127.0.0.%d" % (2 + (first_index + i) % 200), 0))  # spread the 4-tuples
        rc = s.connect_ex(("127.0.0.1", port))
        if rc not in (0, errno.EINPROGRESS):
            st["connect_err"] += 1
            s.close()
            return False
        conns[s.fileno()] = [s, i, None, 0, b""]
        ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLIN)
        return True

    def end(fd, how):
        c = conns.pop(fd)
        ep.unregister(fd)
        c[0].close()
        if how:
            st[how] += 1
            st["cut_after_s"].append(time.monotonic() - c[2])
        return c[1]

    pending = list(range(n))
    connected = 0
    next_tick, k = time.monotonic(), 0
    while not stop.is_set():
        while pending and len(conns) - connected < 256:  # stay under the listen backlog
            i = pending.pop()
            if not open_one(i):
                pending.insert(0, i)
                break
        for fd, ev in ep.poll(max(0.0, next_tick - time.monotonic())):
            c = conns.get(fd)
            if c is None:
                continue
            s = c[0]
            if c[2] is None:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    st["connect_err"] += 1
                    pending.append(end(fd, None))
                    continue
                c[2] = time.monotonic()
                connected += 1
                st["connects"] += 1
                ep.modify(fd, select.EPOLLIN)
                slots[random.randrange(len(slots))].append(fd)
                if connected == n:
                    ready.set()
                continue
            try:
                d = s.recv(4096)
            except ConnectionResetError:
                d, c[4] = None, c[4] or b"RST"
            if d:
                c[4] += d
                continue
            connected -= 1
            pending.append(end(fd, "cut_408" if c[4].startswith(b"HTTP/1.1 408") else
                               "cut_reset" if c[4] == b"RST" else "cut_close"))
        now = time.monotonic()
        if now >= next_tick:
            next_tick += tick
            slot = slots[k % len(slots)]
            k += 1
            live = []
            for fd in slot:
                c = conns.get(fd)
                if c is None or c[2] is None:
                    continue
                try:
                    c[3] += c[0].send(head[c[3]:c[3] + 1])
                except BlockingIOError:
                    pass
                except OSError:
                    pass  # the read side sees the reset
                live.append(fd)
            slot[:] = live
    for fd in list(conns):
        end(fd, None)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    st["cpu_s"] = ru.ru_utime + ru.ru_stime
    out.put(st)


# ------------------------------------------------------------------ slow readers

def readers_main(port, n, size, ready, drain, out):
    """n connections asking for size bytes and never reading; on `drain`, each reads
    what it was sent until EOF or reset."""
    socks = []
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # no autotuning: a few KB
        s.bind(("127.0.1.%d" % (1 + i % 200), 0))
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: bench\r\n\r\n" % size)
        socks.append(s)
    ready.set()
    drain.wait()
    st = {"cut": 0, "complete": 0, "still_open": 0, "received_max": 0}
    for s in socks:
        s.settimeout(0.5)
        got = 0
        try:
            while True:
                d = s.recv(1 << 20)
                if not d:
                    break
                got += len(d)
        except ConnectionResetError:
            pass
        except socket.timeout:
            st["still_open"] += 1
        st["received_max"] = max(st["received_max"], got)
        # the head is ~40 bytes: a complete answer is size plus the head
        st["complete" if got >= size else "cut"] += 1
        s.close()
    out.put(st)


# ------------------------------------------------------------------ sluiced

def sluice_stats(admin):
    ws = unix_json(admin, "GET", "/workers")
    return {"errors_client": sum(w["errors_client"] for w in ws),
            "header_timeouts": sum(w.get("header_timeouts", 0) for w in ws),
            "resp_4xx": sum(w["responses"]["4xx"] for w in ws),
            "active": sum(w["active"] for w in ws),
            "accepted": sum(w["accepted"] for w in ws),
            "per_worker_requests": [w["requests"] for w in ws]}


def delta(a, b):
    return {k: b[k] - a[k] for k in ("errors_client", "header_timeouts", "resp_4xx",
                                     "accepted")}


def start_sluice(tmp, sluiced, workers, backend_port, big_port, header_s, send_s):
    port = free_port()
    admin = os.path.join(tmp, "admin.sock")
    pin = "/sys/fs/bpf/sluice-hostile-%d" % os.getpid()
    conf = os.path.join(tmp, "sluice.yaml")
    with open(conf, "w") as f:
        f.write("""# generated by tools/bench/hostile.py
workers: {workers}
log: {{ level: warn, error_log: stderr, access_log: off }}
admin: {{ socket: {admin} }}
bpf: {{ pin_path: {pin} }}
timeouts: {{ client_header: {hs}s, client_body: {ss}s, client_keepalive: 60s }}
listeners:
  - address: "127.0.0.1:{port}"
    routes:
      - path: /big
        upstream: big
      - upstream: b
upstreams:
  b:
    servers:
      - address: 127.0.0.1:{bport}
    pool: {{ max_idle_per_worker: 128 }}
  big:
    servers:
      - address: 127.0.0.1:{bigport}
""".format(workers=workers, admin=admin, pin=pin, hs=header_s, ss=send_s, port=port,
           bport=backend_port, bigport=big_port))
    child = Child("sluiced", [sluiced, "-c", conf], tmp)
    child.meta["pin"] = pin
    wait_http_ready(child, port, 10)
    wait_unix_ready(child, admin, 10)
    return child, port, admin


def wait_active(admin, at_most, timeout):
    """Seconds until sluiced's open client connections fall to at_most (None: never)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if sluice_stats(admin)["active"] <= at_most:
            return time.monotonic() - t0
        time.sleep(0.1)
    return None


def fmt_row(name, m, base):
    ratio = m["p99_ms"] / base["p99_ms"] if base and base["p99_ms"] else float("nan")
    return "%-14s %9.0f %8.3f %8.3f %8.2f %8.1f %7.2fx %6d %11.2f" % (
        name, m["rps"], m["p50_ms"], m["p99_ms"], m["max_ms"], m["max_at_s"], ratio, m["errors"],
        m["cpu"])


def phase_slowloris(a, port, admin, pid, idle):
    stop, out = mp.Event(), mp.Queue()
    readies, slps = [], []
    per = a.slow // a.slow_procs
    for k in range(a.slow_procs):
        n = per + (k < a.slow % a.slow_procs)
        readies.append(mp.Event())
        slps.append(mp.Process(target=slowloris_main,
                               args=(port, n, a.interval, readies[-1], stop, out,
                                     k * (per + 1))))
    t_ramp = time.monotonic()
    for p in slps:
        p.start()
    try:
        for r in readies:
            if not r.wait(max(1, 120 - (time.monotonic() - t_ramp))):
                raise StartError("slowloris clients did not all connect within 120 s")
        ramp = time.monotonic() - t_ramp
        s0 = sluice_stats(admin)
        m = run_normal(port, a.seconds, a.clients, pid=pid)
        s1 = sluice_stats(admin)
    finally:
        stop.set()
    sl = {}
    for _ in slps:
        for k, v in out.get(timeout=60).items():
            sl[k] = sl.get(k, [] if isinstance(v, list) else 0) + v
    for p in slps:
        p.join(10)
    s2 = sluice_stats(admin)
    sl.update(ramp=ramp, open_at_start=s0["active"], during=delta(s0, s1),
              until_stop=delta(s0, s2), back_idle=wait_active(admin, idle, 30))
    return m, sl


def phase_readers(a, port, admin, pid, idle):
    ready, drain, out = mp.Event(), mp.Event(), mp.Queue()
    rdp = mp.Process(target=readers_main, args=(port, a.readers, a.big, ready, drain, out))
    rdp.start()
    try:
        if not ready.wait(60):
            raise StartError("slow readers did not connect within 60 s")
        s0 = sluice_stats(admin)
        t0 = time.monotonic()
        seen = {}

        def watch():  # when sluiced's open connections are back to the normal clients'
            if "idle" not in seen and sluice_stats(admin)["active"] <= idle + a.clients:
                seen["idle"] = time.monotonic() - t0
        m = run_normal(port, a.seconds, a.clients, poll=watch, pid=pid)
        if "idle" not in seen and wait_active(admin, idle, a.send_timeout + 10) is not None:
            seen["idle"] = time.monotonic() - t0
        s1 = sluice_stats(admin)
    finally:
        drain.set()
    rs = out.get(timeout=120)
    rdp.join(10)
    rs.update(open_at_start=s0["active"], during=delta(s0, s1), back_idle=seen.get("idle"))
    return m, rs


def median_row(runs):
    keys = ("rps", "p50_ms", "p99_ms", "max_ms", "max_at_s", "errors", "cpu")
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=10, help="each measuring phase")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of base, slowloris, readers")
    ap.add_argument("--slow", type=int, default=5000, help="slowloris connections")
    ap.add_argument("--slow-procs", type=int, default=1, help="processes driving them")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between dribbled bytes")
    ap.add_argument("--readers", type=int, default=50, help="slow-reader connections")
    ap.add_argument("--big", type=int, default=10 << 20, help="bytes each slow reader asks for")
    ap.add_argument("--clients", type=int, default=1, help="normal keep-alive connections")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--client-header", type=int, default=4, help="timeouts.client_header, s")
    ap.add_argument("--send-timeout", type=int, default=3, help="timeouts.client_body, s")
    a = ap.parse_args()

    build = os.environ.get("SLUICE_BUILD") or os.path.join(ROOT, "build")
    sluiced = os.path.abspath(os.path.join(build, "sluiced"))
    if not os.access(sluiced, os.X_OK):
        print("hostile: %s not built" % sluiced, file=sys.stderr)
        return 2
    nofile = raise_nofile(65536)
    need = a.slow + a.readers + 2 * a.clients + 200
    if nofile < need:
        print("hostile: RLIMIT_NOFILE %d < %d needed; lower --slow" % (nofile, need),
              file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="sluice-hostile-")
    mp.set_start_method("fork")
    # the big responses come from a backend process of their own: the normal client's
    # backend is never busy with them, so what it sees is sluiced's doing
    bport, bigport = free_port(), free_port()
    bready, bigready = mp.Event(), mp.Event()
    bproc = mp.Process(target=backend_main, args=(bport, bready), daemon=True)
    bigproc = mp.Process(target=backend_main, args=(bigport, bigready), daemon=True)
    bproc.start()
    bigproc.start()
    child = None
    runs = {"base": [], "slowloris": [], "readers": []}
    sls, rds = [], []
    try:
        if not bready.wait(10) or not bigready.wait(10):
            raise StartError("backend did not start")
        child, port, admin = start_sluice(tmp, sluiced, a.workers, bport, bigport,
                                          a.client_header, a.send_timeout)
        print("hostile: sluiced %s, %d workers, client_header %ds, send timeout %ds, "
              "RLIMIT_NOFILE %d, %d CPUs, load average %s"
              % (sluiced, a.workers, a.client_header, a.send_timeout, nofile, os.cpu_count(),
                 " ".join(open("/proc/loadavg").read().split()[:3])))
        idle = sluice_stats(admin)["active"]
        s_first = sluice_stats(admin)
        for r in range(a.repeat):
            runs["base"].append(run_normal(port, a.seconds, a.clients, pid=child.pid))
            m, sl = phase_slowloris(a, port, admin, child.pid, idle)
            runs["slowloris"].append(m)
            sls.append(sl)
            m, rd = phase_readers(a, port, admin, child.pid, idle)
            runs["readers"].append(m)
            rds.append(rd)
            print("round %d: base p99 %.3f ms, slowloris p99 %.3f ms, readers p99 %.3f ms"
                  % (r + 1, runs["base"][-1]["p99_ms"], runs["slowloris"][-1]["p99_ms"],
                     runs["readers"][-1]["p99_ms"]), flush=True)
        alive = child.alive()
        s_last = sluice_stats(admin) if alive else s_first
    except StartError as e:
        print("hostile: %s\n%s" % (e.reason, e.log_tail), file=sys.stderr)
        return 1
    finally:
        stop_all()
        for p in (bproc, bigproc):
            p.terminate()
            p.join(5)
        if child is not None:
            shutil.rmtree(child.meta["pin"], ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print("normal client: %d keep-alive connection(s), GET / back to back, %d s per phase, "
          "%d round(s); each row is one phase, the med rows the medians"
          % (a.clients, a.seconds, a.repeat))
    print("%-14s %9s %8s %8s %8s %8s %8s %6s %11s" % (
        "phase", "rps", "p50 ms", "p99 ms", "max ms", "max at s", "p99/base", "errors",
        "sluiced CPU"))
    for r in range(a.repeat):
        for ph in ("base", "slowloris", "readers"):
            print(fmt_row(ph, runs[ph][r], runs["base"][r]))
    med = {ph: median_row(v) for ph, v in runs.items()}
    for ph in ("base", "slowloris", "readers"):
        print(fmt_row(ph + " med", med[ph], med["base"]))
    print()
    for r, sl in enumerate(sls):
        ca = sorted(sl["cut_after_s"]) or [float("nan")]
        cut = sl["cut_408"] + sl["cut_close"] + sl["cut_reset"]
        print("slowloris %d: %d conns (ramp %.1f s, %d open in sluiced), %d connects, %d "
              "connect errors; cut %d (408 %d, close %d, reset %d) after p10 %.2f / median "
              "%.2f / p90 %.2f / max %.2f s; sluiced header_timeouts +%d (errors_client +%d, "
              "4xx +%d) in the phase, +%d until stopped; idle again %s; attacker CPU %.1f s"
              % (r + 1, a.slow, sl["ramp"], sl["open_at_start"], sl["connects"],
                 sl["connect_err"], cut, sl["cut_408"], sl["cut_close"], sl["cut_reset"],
                 ca[len(ca) // 10], statistics.median(ca), ca[len(ca) * 9 // 10], ca[-1],
                 sl["during"]["header_timeouts"], sl["during"]["errors_client"],
                 sl["during"]["resp_4xx"], sl["until_stop"]["header_timeouts"],
                 "after %.1f s" % sl["back_idle"] if sl["back_idle"] is not None else "NEVER",
                 sl["cpu_s"]))
    for r, rd in enumerate(rds):
        print("readers %d: %d x GET %d bytes never read (%d open in sluiced); cut %d, complete "
              "%d, still open at drain %d, most received %d bytes; sluiced errors_client +%d; "
              "all gone %s"
              % (r + 1, a.readers, a.big, rd["open_at_start"], rd["cut"], rd["complete"],
                 rd["still_open"], rd["received_max"], rd["during"]["errors_client"],
                 "%.1f s after they connected" % rd["back_idle"] if rd["back_idle"] is not None
                 else "NEVER"))
    print("sluiced: %s; requests per worker %s"
          % ("alive" if alive else "DIED", s_last["per_worker_requests"]))
    bad = not alive or any(sl["back_idle"] is None for sl in sls) or \
        any(rd["back_idle"] is None or rd["complete"] for rd in rds)
    return 1 if bad else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
