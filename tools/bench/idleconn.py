"""Many idle keep-alive client connections: open N, one request on each, keep them.

open_idle() connects N sockets to 127.0.0.1:port (at most `inflight` handshakes and
requests at a time, so that no listen backlog overflows and drops SYNs), sends one
`GET / HTTP/1.1` (keep-alive) on each, reads the whole response (Content-Length or
chunked) and keeps the socket open and quiet. It runs in the caller's process: the
sockets must stay open while the caller reads the proxy's memory, and one process
holds 5,000 sockets well under the benchmark's fd limit.

still_open() tells how many of them the server has not closed (a non-blocking peek:
EAGAIN = open and quiet); close_all() closes them.
"""
import errno
import os
import selectors
import socket
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


class IdleError(Exception):
    pass


def _response_done(buf):
    """(done, status, keep_alive) of the bytes read so far of one response."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False, None, None
    head = buf[:end].decode("latin-1").split("\r\n")
    parts = head[0].split()
    status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    fields = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        fields[k.strip().lower()] = v.strip().lower()
    keep = "close" not in fields.get("connection", "")
    body = buf[end + 4:]
    if "content-length" in fields:
        return len(body) >= int(fields["content-length"]), status, keep
    if "chunked" in fields.get("transfer-encoding", ""):
        return body.endswith(b"0\r\n\r\n"), status, keep
    return False, status, False  # read-until-close framing: not keep-alive


def open_idle(port, n, inflight=256, timeout=60.0):
    """N open keep-alive connections that each completed one 200 response.

    Returns (sockets, seconds taken). Raises IdleError if any connection fails (the
    measurement would then not be of N connections); the sockets opened so far are
    closed first."""
    sel = selectors.DefaultSelector()
    done, pending = [], {}   # pending: socket -> [phase, bytes read]
    started = 0
    t0 = time.monotonic()
    deadline = t0 + timeout
    try:
        while len(done) < n:
            while started < n and len(pending) < inflight:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                rc = s.connect_ex(("127.0.0.1", port))
                if rc not in (0, errno.EINPROGRESS):
                    s.close()
                    raise IdleError("connection %d: connect: %s" % (started + 1,
                                                                     os.strerror(rc)))
                pending[s] = ["connect", b""]
                sel.register(s, selectors.EVENT_WRITE)
                started += 1
            if time.monotonic() > deadline:
                raise IdleError("%d of %d connections done after %gs"
                                % (len(done), n, timeout))
            for key, _ in sel.select(0.5):
                s = key.fileobj
                st = pending[s]
                if st[0] == "connect":
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise IdleError("connect: %s" % os.strerror(err))
                    s.send(REQUEST)  # small: goes out whole on a fresh connection
                    st[0] = "response"
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                data = s.recv(65536)
                if not data:
                    raise IdleError("connection closed before the response was complete "
                                    "(%d done)" % len(done))
                st[1] += data
                complete, status, keep = _response_done(st[1])
                if status is not None and status != 200:
                    raise IdleError("HTTP %d instead of 200" % status)
                if complete:
                    if not keep:
                        raise IdleError("the response closes the connection")
                    sel.unregister(s)
                    del pending[s]
                    done.append(s)
    except BaseException:
        close_all(done + list(pending))
        raise
    finally:
        sel.close()
    return done, time.monotonic() - t0


def still_open(socks):
    """How many of socks the peer has neither closed nor written to."""
    n = 0
    for s in socks:
        try:
            if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                continue  # EOF: closed by the server
        except BlockingIOError:
            n += 1        # open, nothing to read
        except OSError:
            pass          # reset
    return n


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass
