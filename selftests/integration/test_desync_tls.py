"""The desync suite (test_desync.py) again, every case over TLS: each daemon's listeners
terminate TLS and each client connection is a TLS one. The HTTP/1 session on the TLS
transport must refuse and forward exactly what it does on raw TCP; records split the
bytes differently from segments, and decrypted bytes the fd does not announce
(pending()) are where a session would stall or lose a pipelined request.

A certificate is made at run time with openssl."""
import os
import socket
import ssl
import subprocess

import pytest

import test_desync
from conftest import SluiceFactory
from daemon import Sluice
from client import HTTPClient
from env import TIMEOUT

# Every test of the suite, collected again here with the TLS `sluice` fixture below,
# except the two that open raw TCP client sockets themselves (a plain request to a TLS
# port is answered 400 by design) or dup() the client socket to write from a second
# thread (an SSL connection cannot be shared that way): their raw-TCP runs stay.
RAW_SOCKET_TESTS = {"test_megabytes_of_chunk_extensions_get_413",
                    "test_response_trailer_after_a_pause_at_the_last_chunk"}
for _name in dir(test_desync):
    if (_name.startswith("test_") and _name not in RAW_SOCKET_TESTS) or _name == "strict":
        globals()[_name] = getattr(test_desync, _name)


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("desync-tls"))
    cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=sluice.test",
                    "-addext", "subjectAltName=DNS:sluice.test"], check=True,
                   capture_output=True)
    return cert, key


class TLSSluice(Sluice):
    tls_pair = None

    def write_config(self, config):
        if isinstance(config, dict):
            lst = []
            for li in config.get("listeners", []):
                li = dict(li)
                li.setdefault("tls", {"certificates": [{"cert": self.tls_pair[0],
                                                        "key": self.tls_pair[1]}]})
                lst.append(li)
            config = dict(config, listeners=lst)
        return super().write_config(config)

    def client(self, timeout=None, listener=0):
        host, port = self.listen[listener]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.tls_pair[0])
        raw = socket.create_connection((host, port), timeout=timeout or TIMEOUT)
        s = ctx.wrap_socket(raw, server_hostname="sluice.test")
        c = HTTPClient(port, host, timeout=timeout or TIMEOUT, sock=s)
        self.clients.append(c)
        return c


class TLSFactory(SluiceFactory):
    def __init__(self, tmp_path, pair):
        super().__init__(tmp_path)
        self.pair = pair

    def new(self, name=None):
        s = TLSSluice(self.dir, name or "sluice%d" % len(self.instances))
        s.tls_pair = self.pair
        self.instances.append(s)
        return s


@pytest.fixture
def sluice(tmp_path, backend, tls_pair):
    f = TLSFactory(tmp_path, tls_pair)
    yield f
    problems = []
    for s in f.instances:
        for p in s.stop():
            problems.append("%s: %s\n--- stderr tail ---\n%s" % (s.describe(), p,
                                                                 s.stderr()[-3000:]))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
