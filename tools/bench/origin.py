#!/usr/bin/python3
"""A slow origin for the cache stampede scenario: every GET under /stampede/ waits
DELAY seconds, then answers BODY bytes with `Cache-Control: max-age=3600`; it counts
requests per path (HEAD and GET alike, every method counts). GET /_count?path=P answers
that count; GET / answers at once (the proxies' readiness probe; not counted under
/stampede/). One thread per connection, HTTP/1.1 keep-alive.

Usage: origin.py PORT [DELAY_S] [BODY_BYTES]
"""
import socketserver
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler

COUNT = {}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _answer(self, status, body, headers=(), head=False):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _serve(self, head):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/_count":
            p = urllib.parse.parse_qs(url.query).get("path", [""])[0]
            with LOCK:
                n = COUNT.get(p, 0)
            self._answer(200, b"%d\n" % n)
            return
        with LOCK:
            COUNT[url.path] = COUNT.get(url.path, 0) + 1
        if url.path.startswith("/stampede/"):
            time.sleep(DELAY)
            self._answer(200, BODY, [("Cache-Control", "max-age=3600")], head)
            return
        self._answer(200, b"origin\n", head=head)

    def do_GET(self):
        self._serve(False)

    def do_HEAD(self):
        self._serve(True)


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 4096


if __name__ == "__main__":
    port = int(sys.argv[1])
    DELAY = float(sys.argv[2]) if len(sys.argv) > 2 else 0.2
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
    BODY = bytes((i * 7 + 3) & 0xFF for i in range(n))
    Server(("127.0.0.1", port), Handler).serve_forever()
