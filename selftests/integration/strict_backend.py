"""A strict recording HTTP/1.1 origin for the desync tests.

It parses exactly what sluice forwards, per connection, with its own parser (not h11, no
leniency): every request (request line, headers as a list, body bytes, trailers) and every
framing violation (CL+TE, duplicate Content-Length, obs-fold, bare LF or CR, control bytes,
Connection naming a framing header, forbidden trailer fields, bytes that do not parse as a
request, a request to a path the test did not expect) is recorded. A violation that leaves
the framing unknown ends the connection without an answer, as a careful origin would.

Answers are scripted per path with Reply (status, headers, body, chunked with trailers, raw
bytes, cut or RST after N bytes, hang), so the same origin can play a broken backend. Any
path without a script gets a JSON description of the request it parsed.
"""
import json
import re
import select
import socket
import struct
import threading
import time
import urllib.parse

from env import TIMEOUT

TOKEN = re.compile(rb"\A[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
VERSION = re.compile(rb"\AHTTP/1\.[01]\Z")
CHUNK_SIZE_LINE = re.compile(rb"\A([0-9A-Fa-f]+)((?:;[^\r\n]*)?)\Z")
CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # control bytes except HTAB
TARGET_BAD = re.compile(rb"[\x00-\x20\x7f]")
MAX_HEAD = 1 << 20
# RFC 9110 6.5.1 and the list sluice implements (CONTRACT: trailers)
FORBIDDEN_TRAILERS = {
    "content-length", "transfer-encoding", "host", "connection", "keep-alive", "upgrade",
    "te", "trailer", "authorization", "cookie", "set-cookie", "expect", "range",
    "cache-control", "content-encoding", "content-type", "content-range", "max-forwards",
    "age", "expires", "date", "location", "retry-after", "vary", "warning",
    "www-authenticate", "proxy-authorization", "proxy-authenticate", "proxy-connection",
}
FRAMING_NAMES = {"content-length", "transfer-encoding", "host"}


def forbidden_trailer(name):
    n = name.lower()
    return n in FORBIDDEN_TRAILERS or n.startswith("proxy-") or n.startswith("if-")


class Unparseable(Exception):
    """The bytes cannot be read as HTTP/1.1 any further on this connection."""


class StrictRequest:
    def __init__(self, conn_id):
        self.conn_id = conn_id
        self.seq = 0  # position on its connection, from 1
        self.request_line = b""
        self.method = self.target = self.version = None
        self.headers = []  # [(name, value)] latin-1 str, wire order
        self.body = b""  # decoded
        self.chunk_exts = []  # chunk extensions as received
        self.trailers = []  # [(name, value)]
        self.raw = b""  # every byte of the request as received
        self.violations = []
        self.complete = False

    @property
    def path(self):
        return urllib.parse.urlsplit(self.target).path if self.target else ""

    def headers_named(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def header(self, name, default=None):
        v = self.headers_named(name)
        return v[0] if v else default

    def has(self, name):
        return bool(self.headers_named(name))

    def tokens(self, name):
        return {t.strip().lower() for v in self.headers_named(name) for t in v.split(",")
                if t.strip()}

    def wants_close(self):
        toks = self.tokens("Connection")
        if self.version == "HTTP/1.0":
            return "keep-alive" not in toks
        return "close" in toks

    def describe(self):
        return {"conn": self.conn_id, "seq": self.seq, "method": self.method,
                "target": self.target, "version": self.version, "body_len": len(self.body),
                "trailers": self.trailers}

    def __repr__(self):
        return "<StrictRequest %s %r conn=%s seq=%d body=%d viol=%r>" % (
            self.method, (self.target or "")[:60], self.conn_id, self.seq, len(self.body),
            self.violations)


class Reply:
    """How to answer one request.

    raw:       exact bytes to send (nothing added)
    body:      Content-Length body (default: JSON description of the request)
    chunks:    list of bytes sent chunked (with `ext` on every size line and `trailers`)
    headers:   extra (name, value) pairs; give Content-Length/Transfer-Encoding yourself
               to override the framing sluice would otherwise see
    cut_after: send only the first N bytes of the rendered answer, then close (rst=True:
               RST instead of FIN); rst=True alone: RST without answering
    hang:      after sending (all or cut_after bytes) wait until backend.release is set
    close:     close the connection after answering
    """

    def __init__(self, status=200, reason="OK", headers=(), body=None, chunks=None, ext=b"",
                 trailers=(), raw=None, cut_after=None, rst=False, hang=False, close=False):
        self.status, self.reason, self.headers = status, reason, list(headers)
        self.body, self.chunks, self.ext, self.trailers = body, chunks, ext, list(trailers)
        self.raw, self.cut_after, self.rst = raw, cut_after, rst
        self.hang, self.close = hang, close

    def render(self, req):
        if self.raw is not None:
            return self.raw
        hl = list(self.headers)
        names = {n.lower() for n, _ in hl}
        if self.chunks is not None:
            if "transfer-encoding" not in names:
                hl.append(("Transfer-Encoding", "chunked"))
            out = b""
            for c in self.chunks:
                out += b"%x%s\r\n%s\r\n" % (len(c), self.ext, c)
            out += b"0%s\r\n" % self.ext
            out += b"".join(b"%s: %s\r\n" % (n.encode(), v.encode()) for n, v in self.trailers)
            body = out + b"\r\n"
        else:
            body = self.body
            if body is None:
                body = json.dumps(req.describe()).encode()
            if "content-length" not in names and "transfer-encoding" not in names and \
                    self.status not in (204, 304) and self.status >= 200:
                hl.append(("Content-Length", str(len(body))))
        if (self.close or req.wants_close()) and "connection" not in names:
            hl.append(("Connection", "close"))
        head = "HTTP/1.1 %d %s\r\n" % (self.status, self.reason)
        head += "".join("%s: %s\r\n" % h for h in hl) + "\r\n"
        if req.method == "HEAD":
            body = b""
        return head.encode("latin-1") + body


class StrictConn:
    def __init__(self, backend, sock, cid):
        self.backend = backend
        self.sock = sock
        self.id = cid
        self.buf = b""
        self.closed = False
        self.idle = False  # blocked reading between requests with nothing buffered
        self.nreq = 0

    def _recv(self):
        self.sock.settimeout(60)
        try:
            data = self.sock.recv(262144)
        except (ConnectionResetError, socket.timeout):
            data = b""
        except OSError:
            data = b""
        if data:
            self.backend._count(len(data))
        return data

    def _fill(self):
        d = self._recv()
        if not d:
            raise EOFError
        self.buf += d

    def _line(self, req, what, limit=MAX_HEAD):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                break
            if len(self.buf) > limit:
                raise Unparseable("%s longer than %d bytes" % (what, limit))
            self._fill()
        line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
        req.raw += line
        if not line.endswith(b"\r\n"):
            raise Unparseable("bare LF ending %s: %r" % (what, line[:120]))
        line = line[:-2]
        if b"\r" in line:
            raise Unparseable("bare CR in %s: %r" % (what, line[:120]))
        return line

    def _exact(self, req, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        req.raw += data
        return data

    def _fields(self, req, what):
        """Header or trailer fields up to the empty line: [(name, value)]."""
        out = []
        size = 0
        while True:
            line = self._line(req, what)
            size += len(line) + 2
            if size > MAX_HEAD:
                raise Unparseable("%s section over %d bytes" % (what, MAX_HEAD))
            if not line:
                return out
            if line[:1] in (b" ", b"\t"):
                raise Unparseable("obs-fold in %s: %r" % (what, line[:120]))
            if b":" not in line:
                raise Unparseable("%s line without colon: %r" % (what, line[:120]))
            name, value = line.split(b":", 1)
            if not TOKEN.match(name):
                raise Unparseable("bad %s field name %r" % (what, name[:120]))
            value = value.strip(b" \t")
            if CTL.search(value):
                req.violations.append("control byte in %s %s: %r" %
                                      (what, name.decode("latin-1"), value[:120]))
            out.append((name.decode("latin-1"), value.decode("latin-1")))

    def read_request(self):
        """Next request; None on a clean close between requests. Raises Unparseable."""
        req = StrictRequest(self.id)
        self.idle = not self.buf
        while not self.buf:
            d = self._recv()
            if not d:
                return None
            self.idle = False
            self.buf += d
        self.idle = False
        try:
            return self._parse(req)
        except EOFError:
            req.raw += self.buf
            self.backend._partial(req)
            return None
        except Unparseable as e:
            req.raw += self.buf
            req.violations.append(str(e))
            self.backend._garbage(req)
            raise

    def _parse(self, req):
        line = self._line(req, "request line", limit=MAX_HEAD)
        if not line:
            raise Unparseable("empty line where a request line was expected")
        req.request_line = line
        parts = line.split(b" ")
        if len(parts) != 3 or not TOKEN.match(parts[0]) or not parts[1] or \
                TARGET_BAD.search(parts[1]) or not VERSION.match(parts[2]):
            raise Unparseable("bad request line %r" % line[:200])
        req.method, req.target, req.version = (p.decode("latin-1") for p in parts)
        req.headers = self._fields(req, "header")
        v = req.violations
        cl = req.headers_named("Content-Length")
        te = req.headers_named("Transfer-Encoding")
        conn_names = req.tokens("Connection") & FRAMING_NAMES
        if conn_names:
            v.append("Connection names %s" % ", ".join(sorted(conn_names)))
        hosts = req.headers_named("Host")
        if req.version == "HTTP/1.1" and len(hosts) != 1:
            v.append("%d Host headers" % len(hosts))
        if te and cl:
            raise Unparseable("both Content-Length and Transfer-Encoding")
        if te:
            codings = [c.strip().lower() for x in te for c in x.split(",")]
            if codings[-1] != "chunked":
                raise Unparseable("Transfer-Encoding %r does not end in chunked" % te)
            if codings != ["chunked"] or len(te) != 1:
                v.append("Transfer-Encoding %r is not exactly chunked" % te)
            self._chunked(req)
        elif cl:
            if len(cl) > 1:
                v.append("duplicate Content-Length %r" % cl)
            if len(set(cl)) != 1 or not re.match(r"\A[0-9]+\Z", cl[0]):
                raise Unparseable("bad Content-Length %r" % cl)
            req.body = self._exact(req, int(cl[0]))
        req.complete = True
        return req

    def _chunked(self, req):
        body = []
        while True:
            line = self._line(req, "chunk size line")
            m = CHUNK_SIZE_LINE.match(line)
            if not m:
                raise Unparseable("bad chunk size line %r" % line[:120])
            size = int(m.group(1), 16)
            if m.group(2):
                req.chunk_exts.append(m.group(2))
            if size == 0:
                break
            body.append(self._exact(req, size))
            if self._exact(req, 2) != b"\r\n":
                raise Unparseable("chunk data not followed by CRLF")
        req.trailers = self._fields(req, "trailer")
        for n, _ in req.trailers:
            if forbidden_trailer(n):
                req.violations.append("forbidden trailer field %s" % n)
        req.body = b"".join(body)

    def send(self, data):
        self.sock.sendall(data)

    def close(self, rst=False):
        if self.closed:
            return
        self.closed = True
        try:
            if rst:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class StrictBackend:
    """Strict origin on 127.0.0.1 and a free port; one thread per connection."""

    def __init__(self, name=None, expect=None):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self.name = name or "strict%d" % self.port
        self.expected = None if expect is None else set(expect)
        self.scripts = {}  # path -> Reply or callable(req) -> Reply
        self.requests = []  # complete requests, arrival order
        self.partial = []  # requests cut by EOF (a streamed body sluice aborted)
        self.garbage = []  # bytes that did not parse (the connection was then closed)
        self.violations = []  # (conn, seq, text) for everything above and in requests
        self.accepted = 0
        self.bytes_received = 0
        self.release = threading.Event()
        self.errors = []
        self.lock = threading.Condition()
        self.conns = []
        self.threads = []
        self.stopping = False
        self.accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.accept_thread.start()

    def __repr__(self):
        return "<StrictBackend %s accepted=%d requests=%r violations=%r>" % (
            self.address, self.accepted, self.requests, self.violations)

    # -- script -------------------------------------------------------------------------
    def on(self, path, reply):
        """Answer requests to path with reply (a Reply, or callable(req) -> Reply)."""
        self.scripts[path] = reply
        return self

    def expect(self, *paths):
        """From now on a request to any other path is a violation."""
        self.expected = set(self.expected or ()) | set(paths)
        return self

    # -- records ------------------------------------------------------------------------
    def _count(self, n):
        with self.lock:
            self.bytes_received += n
            self.lock.notify_all()

    def _record(self, req, conn):
        with self.lock:
            conn.nreq += 1
            req.seq = conn.nreq
            if self.expected is not None and req.path not in self.expected and \
                    req.target not in self.expected:
                req.violations.append("unexpected request %s %r" % (req.method,
                                                                   req.target[:200]))
            self.requests.append(req)
            self.violations += [(req.conn_id, req.seq, t) for t in req.violations]
            self.lock.notify_all()

    def _partial(self, req):
        with self.lock:
            self.partial.append(req)
            self.lock.notify_all()

    def _garbage(self, req):
        with self.lock:
            self.garbage.append(req)
            self.violations += [(req.conn_id, None, t) for t in req.violations]
            self.lock.notify_all()

    def summary(self):
        """[(method, target, body_len)] of the complete requests, arrival order."""
        with self.lock:
            return [(r.method, r.target, len(r.body)) for r in self.requests]

    def saw_nothing(self):
        with self.lock:
            return self.bytes_received == 0

    def wait_requests(self, n, timeout=None):
        deadline = time.monotonic() + (timeout or TIMEOUT)
        with self.lock:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(left)
            return True

    def settle(self, timeout=None, window=0.15):
        """Wait until every connection has parsed everything it received and is waiting
        for more (or closed), with no byte arriving for `window` seconds. Call it before
        asserting on what the backend did NOT see. True once settled."""
        deadline = time.monotonic() + (timeout or TIMEOUT)

        def quiet():
            with self.lock:
                conns = list(self.conns)
                snap = (self.bytes_received, len(self.requests), len(self.partial),
                        len(self.garbage))
            for c in conns:
                if c.closed:
                    continue
                if not c.idle or c.buf:
                    return None
                try:
                    r, _, _ = select.select([c.sock], [], [], 0)
                except (OSError, ValueError):
                    continue
                if r:
                    return None
            return snap

        stable_since, last = None, None
        while time.monotonic() < deadline:
            s = quiet()
            now = time.monotonic()
            if s is not None and s == last:
                if now - stable_since >= window:
                    return True
            else:
                stable_since, last = now, s
            time.sleep(0.02)
        return False

    def report(self):
        with self.lock:
            return "requests=%r\npartial=%r\ngarbage=%r\nviolations=%r" % (
                self.requests, [p.raw[:300] for p in self.partial],
                [g.raw[:300] for g in self.garbage], self.violations)

    # -- serving ------------------------------------------------------------------------
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
                conn = StrictConn(self, s, self.accepted)
                self.conns.append(conn)
                self.lock.notify_all()
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _reply_for(self, req):
        r = self.scripts.get(req.path, self.scripts.get(req.target))
        if callable(r):
            r = r(req)
        return r or Reply()

    def _serve(self, conn):
        try:
            while not self.stopping and not conn.closed:
                try:
                    req = conn.read_request()
                except Unparseable:
                    break
                if req is None:
                    break
                self._record(req, conn)
                reply = self._reply_for(req)
                if reply.rst and reply.cut_after is None:
                    conn.close(rst=True)
                    break
                data = reply.render(req)
                if reply.cut_after is not None:
                    data = data[:reply.cut_after]
                if data:
                    conn.send(data)
                if reply.hang:
                    conn.idle = True  # settled: nothing more will be read here
                    self.release.wait(30)
                    break
                if reply.cut_after is not None:
                    conn.close(rst=reply.rst)
                    break
                if reply.close or req.wants_close():
                    break
        except (OSError, EOFError):
            pass
        except Exception as e:  # a bug in a script: keep it for the test to see
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
