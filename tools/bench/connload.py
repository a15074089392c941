#!/usr/bin/python3 -B
"""Open-loop load of new connections, one request each, timed one by one.

wrk cannot say when each request started or how long each one waited, and it opens
connections only as fast as earlier ones finish; a stalled worker would slow it down.
This opens a new connection every 1/rate seconds whatever happens to the earlier
ones, sends `GET / HTTP/1.1` with `Connection: close` on it, and records for each:
when connect() was called, when the first byte of the answer came (connect-to-first-
byte latency), the status, or why it failed.

As a script (one process, pinned to one CPU so that its SYNs are handled there):
  connload.py PORT RATE CPU START DURATION TIMEOUT
prints one JSON object: {"cpu", "records": [[t_connect, t_first_byte|null,
status|null, error|null], ...]} with times on CLOCK_MONOTONIC (time.monotonic(),
which is the same clock in every process). START is when to begin, on that clock.

run() starts one such process per CPU and returns all the records.
"""
import errno
import json
import os
import selectors
import socket
import subprocess
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


def _load(port, rate, start, duration, timeout):
    sel = selectors.DefaultSelector()
    interval = 1.0 / rate
    end = start + duration
    records = []
    pending = {}    # socket -> [t_connect, t_first, status, error, phase, buffer]
    n = 0
    while True:
        now = time.monotonic()
        while start + n * interval <= now and start + n * interval < end:
            n += 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            t0 = time.monotonic()
            rc = s.connect_ex(("127.0.0.1", port))
            if rc not in (0, errno.EINPROGRESS):
                records.append([t0, None, None, "connect: %s" % os.strerror(rc)])
                s.close()
                continue
            pending[s] = [t0, None, None, None, "connect", b""]
            sel.register(s, selectors.EVENT_WRITE)
        if now >= end and not pending:
            break
        # expire connections that waited too long
        for s, r in list(pending.items()):
            if now - r[0] > timeout:
                r[3] = "timeout (%s)" % r[4]
                _finish(sel, pending, records, s)
        wait = max(0.0, min(start + n * interval - now, 0.005)) if now < end else 0.005
        for key, _ in sel.select(wait):
            s = key.fileobj
            r = pending.get(s)
            if r is None:
                continue
            if r[4] == "connect":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    r[3] = "connect: %s" % os.strerror(err)
                    _finish(sel, pending, records, s)
                    continue
                try:
                    s.send(REQUEST)  # small: goes out whole on a fresh connection
                except OSError as e:
                    r[3] = "send: %s" % e.strerror
                    _finish(sel, pending, records, s)
                    continue
                r[4] = "response"
                sel.modify(s, selectors.EVENT_READ)
                continue
            try:
                data = s.recv(65536)
            except OSError as e:
                r[3] = "recv: %s" % e.strerror
                _finish(sel, pending, records, s)
                continue
            if data and r[1] is None:
                r[1] = time.monotonic()
            if data:
                if len(r[5]) < 64:
                    r[5] += data[:64]
                continue
            # EOF: the answer is complete (Connection: close)
            head = r[5].split(b"\r\n", 1)[0].split()
            if len(head) >= 2 and head[1].isdigit():
                r[2] = int(head[1])
            elif r[1] is None:
                r[3] = "closed without an answer"
            else:
                r[3] = "bad status line %r" % r[5][:40]
            _finish(sel, pending, records, s)
    return records


def _finish(sel, pending, records, s):
    r = pending.pop(s)
    sel.unregister(s)
    s.close()
    records.append(r[:4])


def run(port, rate_per_cpu, cpus, start, duration, timeout=10.0):
    """One load process per CPU (each `rate_per_cpu` connections/s from `start` for
    `duration` s). Blocks until all are done; returns every record."""
    procs = []
    for cpu in cpus:
        argv = [sys.executable, "-B", os.path.abspath(__file__), str(port), str(rate_per_cpu),
                str(cpu), repr(start), repr(duration), repr(timeout)]
        procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    return procs


def collect(procs, limit):
    """Wait for the processes run() started; all their records (RuntimeError if one
    failed)."""
    records = []
    try:
        for p in procs:
            try:
                out, err = p.communicate(timeout=limit)
            except subprocess.TimeoutExpired:
                raise RuntimeError("connection load did not finish within %ds" % limit)
            if p.returncode != 0:
                raise RuntimeError("connection load failed: %s" % err.strip()[-300:])
            records += json.loads(out)["records"]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return records


def main(argv):
    port, rate, cpu = int(argv[1]), float(argv[2]), int(argv[3])
    start, duration, timeout = float(argv[4]), float(argv[5]), float(argv[6])
    os.sched_setaffinity(0, {cpu})
    records = _load(port, rate, start, duration, timeout)
    json.dump({"cpu": cpu, "records": records}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
