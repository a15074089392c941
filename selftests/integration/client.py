"""Raw-socket HTTP/1.1 client for the integration tests: exact bytes out, strict parsing in.

Everything sluice sends is parsed strictly (CRLF line ends, no obs-fold, one framing), so a
malformed response from the proxy fails the test instead of being papered over.
"""
import json
import socket
import ssl
import time

from env import TIMEOUT


class ConnectionClosed(Exception):
    """The peer closed (FIN or RST) before a complete response arrived."""

    def __init__(self, msg, partial=b""):
        super().__init__("%s; received so far: %r" % (msg, partial[:300]))
        self.partial = partial


class ResponseTimeout(AssertionError):
    """No complete response within the deadline: a hung daemon fails, never hangs."""


class ProtocolError(AssertionError):
    """sluice sent something that is not valid HTTP/1.1."""


def _hdr_get(headers, name):
    name = name.lower()
    return [v for n, v in headers if n.lower() == name]


class Response:
    def __init__(self, version, status, reason, headers, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # [(name, value)] in wire order, str (latin-1)
        self.raw_head = raw_head
        self.body = b""
        self.framing = "none"  # none | length | chunked | close
        self.trailers = []
        self.informational = []  # 1xx responses seen before this one

    def header(self, name, default=None):
        v = _hdr_get(self.headers, name)
        return v[0] if v else default

    def headers_named(self, name):
        return _hdr_get(self.headers, name)

    def has(self, name):
        return bool(_hdr_get(self.headers, name))

    def connection_tokens(self):
        toks = set()
        for v in self.headers_named("Connection"):
            toks.update(t.strip().lower() for t in v.split(",") if t.strip())
        return toks

    def json(self):
        return json.loads(self.body.decode("latin-1"))

    def __repr__(self):
        return "<Response %d %s %r body=%d bytes>" % (self.status, self.reason, self.headers,
                                                       len(self.body))


def build_request(method="GET", target="/", headers=None, body=None, host="sluice.test",
                  version="HTTP/1.1", chunked=False, chunk_size=None):
    """Bytes of one request. headers: list of (name, value) or dict. host=None: no Host.
    A Content-Length is added for a body unless chunked or the caller set framing."""
    hl = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {n.lower() for n, _ in hl}
    if host is not None and "host" not in names:
        hl.insert(0, ("Host", host))
    if isinstance(body, str):
        body = body.encode()
    if chunked:
        if "transfer-encoding" not in names:
            hl.append(("Transfer-Encoding", "chunked"))
    elif body is not None and "content-length" not in names and "transfer-encoding" not in names:
        hl.append(("Content-Length", str(len(body))))
    out = ["%s %s %s\r\n" % (method, target, version)]
    out += ["%s: %s\r\n" % (n, v) for n, v in hl]
    data = "".join(out).encode("latin-1") + b"\r\n"
    if chunked:
        data += encode_chunked(body or b"", chunk_size)
    elif body:
        data += body
    return data


def encode_chunked(body, chunk_size=None):
    size = chunk_size or max(1, len(body))
    parts = []
    for i in range(0, len(body), size):
        c = body[i:i + size]
        parts.append(b"%x\r\n%s\r\n" % (len(c), c))
    parts.append(b"0\r\n\r\n")
    return b"".join(parts)


def connect(port, host="127.0.0.1", timeout=None):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout or TIMEOUT)
    s.connect((host, port))
    return s


class HTTPClient:
    """One client connection. Reads are buffered so pipelined responses parse in order."""

    def __init__(self, port, host="127.0.0.1", timeout=None, sock=None):
        self.timeout = timeout or TIMEOUT
        self.sock = sock or connect(port, host, self.timeout)
        self.sock.settimeout(self.timeout)
        self.buf = b""
        self.eof = False
        self.reset = False

    # -- sending --------------------------------------------------------------------
    def send(self, data, ignore_errors=False):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError):
            # the peer closed while we were sending (over TLS the same shows as an
            # SSL EOF): what it answered first is still read after this
            if not ignore_errors:
                raise

    def request(self, method="GET", target="/", headers=None, body=None, host="sluice.test",
                version="HTTP/1.1", chunked=False, chunk_size=None, timeout=None):
        self.send(build_request(method, target, headers, body, host, version, chunked,
                                chunk_size))
        return self.read_response(method=method, timeout=timeout)

    # -- receiving ------------------------------------------------------------------
    def _fill(self, deadline, what):
        """Read more bytes into buf; False on EOF."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ResponseTimeout("timed out waiting for %s; buffered: %r" %
                                  (what, self.buf[:300]))
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(262144)
        except socket.timeout:
            raise ResponseTimeout("timed out waiting for %s; buffered: %r" %
                                  (what, self.buf[:300])) from None
        except ConnectionResetError:
            self.reset = True
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_line(self, deadline, what):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            if not self._fill(deadline, what):
                raise ConnectionClosed("closed while reading %s" % what, self.buf)

    def _read_exact(self, n, deadline, what):
        while len(self.buf) < n:
            if not self._fill(deadline, what):
                raise ConnectionClosed("closed after %d of %d bytes of %s" %
                                       (len(self.buf), n, what), self.buf)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _read_head(self, deadline):
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head, self.buf = self.buf[:i + 4], self.buf[i + 4:]
                return head
            if b"\n\n" in self.buf and b"\r\n\r\n" not in self.buf:
                raise ProtocolError("response head not CRLF-terminated: %r" % self.buf[:300])
            if not self._fill(deadline, "response head"):
                raise ConnectionClosed("closed before a complete response head", self.buf)

    @staticmethod
    def parse_head(head):
        lines = head[:-4].split(b"\r\n")
        status_line = lines[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or len(parts[1]) != 3 \
                or not parts[1].isdigit():
            raise ProtocolError("bad status line %r" % status_line)
        headers = []
        for raw in lines[1:]:
            line = raw.decode("latin-1")
            if not line or line[0] in " \t":
                raise ProtocolError("obs-fold or empty line in response head: %r" % head)
            if ":" not in line:
                raise ProtocolError("header line without colon: %r" % line)
            name, value = line.split(":", 1)
            if name != name.strip() or not name:
                raise ProtocolError("whitespace in header name: %r" % line)
            if any(c in value for c in "\r\n\0"):
                raise ProtocolError("CR/LF/NUL in header value: %r" % line)
            headers.append((name, value.strip(" \t")))
        return Response(parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "", headers,
                        head)

    def read_response(self, method="GET", skip_1xx=True, timeout=None):
        """Read one complete response. HEAD/1xx/204/304 have no body; else chunked,
        Content-Length or read-until-close, by RFC 9112 section 6.3."""
        deadline = time.monotonic() + (timeout or self.timeout)
        informational = []
        while True:
            resp = self.parse_head(self._read_head(deadline))
            if 100 <= resp.status < 200 and resp.status != 101 and skip_1xx:
                informational.append(resp)
                continue
            break
        resp.informational = informational
        te = resp.headers_named("Transfer-Encoding")
        cls = resp.headers_named("Content-Length")
        if te and cls:
            raise ProtocolError("response with both Transfer-Encoding and Content-Length: %r"
                                % resp.raw_head)
        if method == "HEAD" or resp.status < 200 or resp.status in (204, 304):
            return resp
        if te:
            codings = [c.strip().lower() for v in te for c in v.split(",")]
            if codings[-1] == "chunked":
                resp.framing = "chunked"
                resp.body, resp.trailers = self._read_chunked(deadline)
                return resp
            resp.framing = "close"
            resp.body = self.read_until_close(deadline=deadline)
            return resp
        if cls:
            if len(set(cls)) != 1 or not cls[0].isdigit():
                raise ProtocolError("bad Content-Length in response: %r" % cls)
            resp.framing = "length"
            resp.body = self._read_exact(int(cls[0]), deadline, "response body")
            return resp
        resp.framing = "close"
        resp.body = self.read_until_close(deadline=deadline)
        return resp

    def _read_chunked(self, deadline):
        body = []
        while True:
            line = self._read_line(deadline, "chunk size")
            size_s = line.split(b";", 1)[0].strip()
            try:
                size = int(size_s, 16)
            except ValueError:
                raise ProtocolError("bad chunk size line %r" % line) from None
            if size == 0:
                break
            body.append(self._read_exact(size, deadline, "chunk data"))
            if self._read_exact(2, deadline, "chunk CRLF") != b"\r\n":
                raise ProtocolError("chunk data not followed by CRLF")
        trailers = []
        while True:
            line = self._read_line(deadline, "trailers")
            if not line:
                break
            trailers.append(line.decode("latin-1"))
        return b"".join(body), trailers

    def read_until_close(self, timeout=None, deadline=None):
        """Everything until the peer closes. ResponseTimeout if it never does."""
        if deadline is None:
            deadline = time.monotonic() + (timeout or self.timeout)
        while self._fill(deadline, "connection close"):
            pass
        data, self.buf = self.buf, b""
        return data

    def read_responses(self, n, methods=None):
        return [self.read_response(method=(methods[i] if methods else "GET")) for i in range(n)]

    def wait_closed(self, timeout=None):
        """True when the peer closes within timeout (and returns no more data), False if
        it is still open. Data that arrives first is kept in self.buf."""
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while self._fill(deadline, "close"):
                pass
        except ResponseTimeout:
            return False
        return True

    def is_open(self, wait=0.2):
        """The connection is still open: no EOF within `wait` seconds."""
        return not self.wait_closed(timeout=wait)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def get(port, target="/", host="sluice.test", **kw):
    """One request on a fresh connection; the connection is closed afterwards."""
    with HTTPClient(port) as c:
        return c.request("GET", target, host=host, **kw)
