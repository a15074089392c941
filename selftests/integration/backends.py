"""Programmable raw HTTP/1.1 backends for the integration tests, one thread per connection.

A Backend records every request it receives (raw bytes and parsed), counts accepted
connections and can misbehave on purpose. The behaviour is chosen by path, so one backend
serves many: any path not listed below gets a JSON echo of the request.

  /_/echo-body            the request body back, Content-Length
  /_/big?n=N              N pattern bytes, Content-Length
  /_/chunked?n=N&size=S   N pattern bytes in chunks of S (&trailer=1 adds a trailer)
  /_/close?n=N            N pattern bytes, no framing: close-delimited
  /_/slow?ms=M            answer after M ms
  /_/slowbody?ms=M&n=N    head and half the body, M ms pause, the rest
  /_/stall?n=N&sent=K     head with Content-Length N, K bytes, then silence
  /_/status?code=C        status C without a body (304 carries a Content-Length)
  /_/early?code=103       an interim 1xx response, then the JSON echo
  /_/hold                 wait until backend.release is set (or 30 s), then 200
  /_/drop                 read the request, close without answering
  /_/die?n=N&sent=K&rst=1 head with Content-Length N, K bytes, close (RST if rst=1)
  /_/ws                   RFC 6455 handshake, then echo frames

Tests can also replace backend.handler with their own function(conn, req).
"""
import base64
import hashlib
import json
import random
import socket
import struct
import threading
import time
import urllib.parse

from env import TIMEOUT

_used_ports = set()
_ports_lock = threading.Lock()


def free_port(host="127.0.0.1"):
    """A port nothing listens on right now (and not handed out before in this run)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.bind((host, 0))
        port = s.getsockname()[1]
        s.close()
        with _ports_lock:
            if port not in _used_ports:
                _used_ports.add(port)
                return port
    raise RuntimeError("no free port")


def dead_address(host="127.0.0.1"):
    """host:port where nothing listens: connecting is refused."""
    return "%s:%d" % (host, free_port(host))


_pattern_cache = {}


def pattern(n):
    """n deterministic pseudo-random bytes (reordering or loss anywhere is detectable)."""
    if n not in _pattern_cache:
        _pattern_cache[n] = random.Random(n).randbytes(n)
    return _pattern_cache[n]


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def ws_frame(opcode, payload, mask=None, fin=True):
    """One RFC 6455 frame; mask: 4 bytes (client to server frames) or None."""
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return head + mask + payload
    return head + payload


def ws_read_frame(read_exact):
    """(fin, opcode, payload) from a reader function; unmasks masked frames."""
    b0, b1 = read_exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", read_exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", read_exact(8))[0]
    mask = read_exact(4) if b1 & 0x80 else None
    payload = read_exact(n) if n else b""
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bool(b0 & 0x80), b0 & 0x0F, payload


class Request:
    def __init__(self):
        self.method = self.target = self.version = None
        self.headers = []  # [(name, value)]
        self.body = b""  # decoded (de-chunked)
        self.raw_head = b""
        self.raw_body = b""  # as received, with chunk framing
        self.conn_id = None
        self.seq = 0  # position on its connection, from 1
        self.complete = False
        self.error = None
        self.time = time.monotonic()

    @property
    def raw(self):
        return self.raw_head + self.raw_body

    @property
    def path(self):
        return urllib.parse.urlsplit(self.target).path if self.target else ""

    @property
    def query(self):
        q = urllib.parse.urlsplit(self.target).query if self.target else ""
        return dict(urllib.parse.parse_qsl(q))

    def header(self, name, default=None):
        v = self.headers_named(name)
        return v[0] if v else default

    def headers_named(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower() and v is not None]

    def has(self, name):
        return any(n.lower() == name.lower() for n, _ in self.headers)

    def tokens(self, name):
        return {t.strip().lower() for v in self.headers_named(name) for t in v.split(",")
                if t.strip()}

    def wants_close(self):
        toks = self.tokens("Connection")
        if self.version == "HTTP/1.0":
            return "keep-alive" not in toks
        return "close" in toks

    def __repr__(self):
        return "<Request %s %s conn=%s seq=%d complete=%s>" % (
            self.method, self.target, self.conn_id, self.seq, self.complete)


class BadRequest(Exception):
    pass


class Conn:
    """The backend's side of one accepted connection."""

    def __init__(self, backend, sock, cid):
        self.backend = backend
        self.sock = sock
        self.id = cid
        self.buf = b""
        self.closed = False

    def recv_more(self, timeout=None):
        self.sock.settimeout(timeout if timeout is not None else 60)
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            data = b""
        if data:
            self.backend._count_bytes(len(data))
        return data

    def read_exact(self, n):
        while len(self.buf) < n:
            d = self.recv_more()
            if not d:
                raise EOFError
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_line(self, limit=65536):
        while b"\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise BadRequest("line too long")
            d = self.recv_more()
            if not d:
                raise EOFError
            self.buf += d
        i = self.buf.index(b"\r\n")
        line, self.buf = self.buf[:i], self.buf[i + 2:]
        return line

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def close(self, rst=False):
        if self.closed:
            return
        self.closed = True
        try:
            if rst:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                     struct.pack("ii", 1, 0))
            else:
                self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    # -- request parsing --------------------------------------------------------------
    def read_request(self, idle_timeout):
        """Next request, or None on a clean close between requests."""
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > (1 << 20):
                raise BadRequest("head too big")
            try:
                d = self.recv_more(idle_timeout if not self.buf else None)
            except socket.timeout:
                if self.buf:
                    raise
                return None
            if not d:
                if self.buf:
                    req = Request()
                    req.raw_head = self.buf
                    req.error = "EOF inside head"
                    self.backend._record(req, self)
                return None
            self.buf += d
        i = self.buf.index(b"\r\n\r\n")
        head, self.buf = self.buf[:i + 4], self.buf[i + 4:]
        req = Request()
        req.raw_head = head
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ")
        if len(parts) == 3:
            req.method, req.target, req.version = parts
        for raw in lines[1:]:
            line = raw.decode("latin-1")
            if ":" in line:
                n, v = line.split(":", 1)
                req.headers.append((n, v.strip(" \t")))
            else:
                req.headers.append((line, None))
        try:
            if len(parts) != 3:
                raise BadRequest("bad request line")
            if req.header("Expect", "").lower() == "100-continue":
                self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            te = req.tokens("Transfer-Encoding")
            if te:
                self._read_chunked(req)
            elif req.has("Content-Length"):
                n = int(req.header("Content-Length"))
                req.body = req.raw_body = self.read_exact(n)
        except (EOFError, BadRequest, ValueError, socket.timeout, OSError) as e:
            req.error = "incomplete or bad body: %r" % (e,)
            req.raw_body += self.buf
            self.backend._record(req, self)
            return None
        req.complete = True
        self.backend._record(req, self)
        return req

    def _read_chunked(self, req):
        body, raw = [], []
        while True:
            line = self.read_line()
            raw.append(line + b"\r\n")
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                break
            data = self.read_exact(size + 2)
            raw.append(data)
            if data[-2:] != b"\r\n":
                raise BadRequest("chunk not followed by CRLF")
            body.append(data[:-2])
        while True:
            line = self.read_line()
            raw.append(line + b"\r\n")
            if not line:
                break
            req.trailers = getattr(req, "trailers", []) + [line.decode("latin-1")]
        req.body = b"".join(body)
        req.raw_body = b"".join(raw)


def respond(conn, status=200, reason=None, headers=(), body=b"", close=False, head=False):
    """Send a Content-Length response."""
    if isinstance(body, str):
        body = body.encode()
    reason = reason or REASONS.get(status, "Status")
    hl = list(headers)
    if status not in (204, 304) and not (100 <= status < 200) and \
            not any(n.lower() in ("content-length", "transfer-encoding") for n, _ in hl):
        hl.append(("Content-Length", str(len(body))))
    if close:
        hl.append(("Connection", "close"))
    out = "HTTP/1.1 %d %s\r\n" % (status, reason) + "".join("%s: %s\r\n" % h for h in hl) + "\r\n"
    conn.send(out.encode("latin-1") + (b"" if head else body))


REASONS = {100: "Continue", 101: "Switching Protocols", 103: "Early Hints", 200: "OK",
           204: "No Content", 304: "Not Modified", 400: "Bad Request", 404: "Not Found",
           500: "Internal Server Error"}


class Backend:
    """A threaded raw HTTP/1.1 server on 127.0.0.1 (or ::1) and a free port."""

    def __init__(self, name=None, handler=None, host="127.0.0.1", idle_close=None, port=0):
        self.host = host
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.lsock = socket.socket(fam, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, port))  # port=: come back on a port a stopped one had
        self.lsock.listen(128)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        with _ports_lock:
            _used_ports.add(self.port)
        self.name = name or "b%d" % self.port
        self.handler = handler
        self.idle_close = idle_close  # close connections idle this many seconds
        self.requests = []  # complete requests
        self.partial = []  # requests that never completed (EOF, bad framing)
        self.bytes_received = 0
        self.accepted = 0
        self.release = threading.Event()  # for /_/hold
        self.errors = []  # exceptions raised in handlers
        self.lock = threading.Condition()
        self.stopping = False
        self.conns = []
        self.threads = []
        self.accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.accept_thread.start()

    @property
    def address(self):
        return ("[%s]:%d" if ":" in self.host else "%s:%d") % (self.host, self.port)

    def __repr__(self):
        return "<Backend %s %s accepted=%d requests=%d>" % (self.name, self.address,
                                                             self.accepted, len(self.requests))

    # -- bookkeeping ------------------------------------------------------------------
    def _count_bytes(self, n):
        with self.lock:
            self.bytes_received += n

    def _record(self, req, conn):
        with self.lock:
            req.conn_id = conn.id
            if req.complete:
                conn_reqs = [r for r in self.requests if r.conn_id == conn.id]
                req.seq = len(conn_reqs) + 1
                self.requests.append(req)
            else:
                self.partial.append(req)
            self.lock.notify_all()

    def wait_requests(self, n, timeout=None):
        """True once at least n complete requests arrived."""
        deadline = time.monotonic() + (timeout or TIMEOUT)
        with self.lock:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(left)
            return True

    def wait_accepted(self, n, timeout=None):
        deadline = time.monotonic() + (timeout or TIMEOUT)
        with self.lock:
            while self.accepted < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(left)
            return True

    def reset_stats(self):
        with self.lock:
            self.requests.clear()
            self.partial.clear()
            self.bytes_received = 0
            self.accepted = 0

    def saw_nothing(self):
        """No byte of any request ever arrived."""
        with self.lock:
            return not self.requests and not self.partial and self.bytes_received == 0

    # -- serving ----------------------------------------------------------------------
    def _accept_loop(self):
        while not self.stopping:
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            with self.lock:
                if self.stopping:
                    s.close()
                    break
                self.accepted += 1
                conn = Conn(self, s, self.accepted)
                self.conns.append(conn)
                self.lock.notify_all()
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn):
        try:
            while not self.stopping and not conn.closed:
                req = conn.read_request(self.idle_close)
                if req is None:
                    break
                handler = self.handler or default_handler
                if handler(conn, req) == "close" or req.wants_close():
                    break
        except (OSError, EOFError, BadRequest):
            pass
        except Exception as e:  # a bug in a handler: keep it for the test to see
            self.errors.append(e)
        finally:
            conn.close()

    def stop(self):
        self.stopping = True
        self.release.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        self.accept_thread.join(2)
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self.threads:
            t.join(2)


# -- behaviours ---------------------------------------------------------------------------
def echo_json(conn, req, extra_headers=()):
    body = {
        "backend": conn.backend.name, "conn": conn.id, "seq": req.seq,
        "method": req.method, "target": req.target, "version": req.version,
        "headers": req.headers, "body_len": len(req.body),
        "body_sha256": hashlib.sha256(req.body).hexdigest(),
    }
    if len(req.body) <= 65536:
        body["body"] = req.body.decode("latin-1")
    data = json.dumps(body).encode()
    hl = [("Content-Type", "application/json"), ("X-Backend", conn.backend.name)]
    hl += list(extra_headers)
    respond(conn, 200, headers=hl, body=data, close=req.wants_close(),
            head=req.method == "HEAD")


def default_handler(conn, req):
    q = req.query
    p = req.path
    name = conn.backend.name
    if p == "/_/echo-body":
        respond(conn, 200, headers=[("X-Backend", name)], body=req.body, close=req.wants_close())
    elif p == "/_/big":
        respond(conn, 200, headers=[("X-Backend", name)], body=pattern(int(q["n"])),
                close=req.wants_close(), head=req.method == "HEAD")
    elif p == "/_/chunked":
        n = int(q.get("n", 1000))
        size = int(q.get("size", 100))
        data = pattern(n)
        if req.version == "HTTP/1.0":  # a 1.0 recipient cannot take chunked
            conn.send(b"HTTP/1.1 200 OK\r\nX-Backend: %s\r\n\r\n" % name.encode() + data)
            return "close"
        head = b"HTTP/1.1 200 OK\r\nX-Backend: %s\r\nTransfer-Encoding: chunked\r\n" % \
            name.encode()
        if q.get("trailer"):
            head += b"Trailer: X-Checksum\r\n"
        if req.wants_close():
            head += b"Connection: close\r\n"
        conn.send(head + b"\r\n")
        if req.method == "HEAD":
            return None
        for i in range(0, n, size):
            c = data[i:i + size]
            conn.send(b"%x\r\n%s\r\n" % (len(c), c))
        if q.get("trailer"):
            conn.send(b"0\r\nX-Checksum: %s\r\n\r\n" % hashlib.sha256(data).hexdigest().encode())
        else:
            conn.send(b"0\r\n\r\n")
    elif p == "/_/close":
        conn.send(b"HTTP/1.1 200 OK\r\nX-Backend: %s\r\nContent-Type: application/octet-stream"
                  b"\r\n\r\n" % name.encode() + pattern(int(q.get("n", 1000))))
        return "close"
    elif p == "/_/slow":
        time.sleep(int(q.get("ms", 1000)) / 1000.0)
        echo_json(conn, req)
    elif p == "/_/slowbody":
        n = int(q.get("n", 1000))
        data = pattern(n)
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n + data[:n // 2])
        time.sleep(int(q.get("ms", 1000)) / 1000.0)
        conn.send(data[n // 2:])
    elif p == "/_/stall":
        n = int(q.get("n", 1000))
        k = int(q.get("sent", 10))
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n + pattern(n)[:k])
        conn.backend.release.wait(int(q.get("s", 30)))
        return "close"
    elif p == "/_/status":
        code = int(q.get("code", 204))
        hl = [("X-Backend", name)]
        if code == 304:
            hl += [("ETag", '"v1"'), ("Content-Length", "1234")]
        respond(conn, code, headers=hl)
    elif p == "/_/early":
        code = int(q.get("code", 103))
        conn.send(b"HTTP/1.1 %d %s\r\nLink: </style.css>; rel=preload\r\n\r\n" %
                  (code, REASONS.get(code, "Info").encode()))
        echo_json(conn, req)
    elif p == "/_/hold":
        conn.backend.release.wait(float(q.get("s", 30)))
        respond(conn, 200, headers=[("X-Backend", name)], body=b"released\n",
                close=req.wants_close())
    elif p == "/_/drop":
        return "close"
    elif p == "/_/die":
        n = int(q.get("n", 100000))
        k = int(q.get("sent", 1000))
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n + pattern(n)[:k])
        time.sleep(0.05)
        conn.close(rst=bool(q.get("rst")))
        return "close"
    elif p == "/_/ws":
        return ws_echo(conn, req)
    else:
        echo_json(conn, req)
    return None


def ws_echo(conn, req):
    """Accept a WebSocket upgrade and echo every frame (ping -> pong, close -> close)."""
    key = req.header("Sec-WebSocket-Key")
    if "websocket" not in req.tokens("Upgrade") or "upgrade" not in req.tokens("Connection") \
            or not key:
        respond(conn, 400, body=b"not a websocket upgrade\n")
        return "close"
    conn.send("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Accept: %s\r\n\r\n" % ws_accept(key))
    while True:
        try:
            fin, op, payload = ws_read_frame(conn.read_exact)
        except (EOFError, OSError):
            return "close"
        if op == 0x8:
            conn.send(ws_frame(0x8, payload[:2]))
            return "close"
        if op == 0x9:
            conn.send(ws_frame(0xA, payload))
            continue
        conn.send(ws_frame(op, payload, fin=fin))


def on_path(path, special):
    """special(conn, req) for requests to path, the default behaviours for the rest."""
    def handler(conn, req):
        if req.path == path:
            return special(conn, req)
        return default_handler(conn, req)
    return handler


def raw_handler(data, after="keep"):
    """A handler that sends fixed bytes; after: keep (read on), close, or rst."""
    def handler(conn, req):
        conn.send(data)
        if after == "close":
            return "close"
        if after == "rst":
            conn.close(rst=True)
            return "close"
        return None
    return handler


class Blackhole:
    """A port whose SYNs are dropped (full accept queue): connecting to it times out."""

    def __init__(self, host="127.0.0.1"):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind((host, 0))
        self.lsock.listen(0)
        self.port = self.lsock.getsockname()[1]
        self.address = "%s:%d" % (host, self.port)
        self.fill = socket.create_connection((host, self.port), timeout=2)
        # the accept queue (backlog 0 holds one) is now full

    def close(self):
        self.fill.close()
        self.lsock.close()
