"""TLS termination on listeners (listeners[].tls), seen from the wire.

Hostile first: garbage instead of a ClientHello, plain HTTP to the TLS port (answered
with nginx's 400 "plain HTTP request was sent to HTTPS port", then closed), a client
closing mid-handshake, a slowloris handshake (cut at handshake_timeout), a huge
ClientHello, TLS 1.0/1.1, renegotiation, ALPN offering only what is not spoken, an
unknown SNI (the default certificate), mTLS required without a certificate or with one
from another CA, and identity headers forged by the client (always stripped). Each is
counted by reason in /workers and nothing crashes. Then what must work: SNI selection
(exact, wildcard, default), RSA and ECDSA side by side, the chain sent, ALPN http/1.1,
X-Forwarded-Proto https, identity headers from a verified client certificate, the TLS
access log fields, resumption across workers (TLS 1.2 tickets and TLS 1.3 PSK), ticket
rotation (one rotation resumes, two do not), certificate reload on SIGHUP without
dropping a keep-alive connection, a bad certificate on reload rejected.

Certificates are made at run time with the openssl CLI (nothing secret is committed);
clients are Python's ssl module, openssl s_client and curl."""
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time

import pytest

from client import HTTPClient
from daemon import wait_for
from env import SCALE, TIMEOUT
from test_pool import admin_sock, bpf, workers, total  # noqa: F401  (fixtures, helpers)


# -- certificates -------------------------------------------------------------------------
def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def _key_args(kind):
    if kind == "rsa":
        return ["-newkey", "rsa:2048"]
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]


def _ca(d, name, kind="ec"):
    _openssl("req", "-x509", *_key_args(kind), "-nodes", "-keyout", name + ".key", "-out",
             name + ".pem", "-days", "2", "-subj", "/CN=" + name,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    return os.path.join(d, name + ".pem")


def _leaf(d, ca, name, cn, san=None, client=False, kind="ec", days="2", ca_ext=False):
    _openssl("req", *_key_args(kind), "-nodes", "-keyout", name + ".key", "-out",
             name + ".csr", "-subj", "/CN=" + cn, cwd=d)
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        if ca_ext:
            f.write("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n")
        else:
            if san:
                f.write("subjectAltName=%s\n" % san)
            f.write("extendedKeyUsage=%s\n" % ("clientAuth" if client else "serverAuth"))
    if days.startswith("-"):
        # already expired (x509 -req takes no start date in OpenSSL 3.0: "ca" does)
        with open(os.path.join(d, "ca.cnf"), "w") as f:
            f.write("[ca]\ndefault_ca=c\n[c]\ndatabase=index.txt\nnew_certs_dir=.\n"
                    "serial=serial.txt\ndefault_md=sha256\npolicy=p\n[p]\n"
                    "commonName=supplied\n")
        open(os.path.join(d, "index.txt"), "w").close()
        with open(os.path.join(d, "serial.txt"), "w") as f:
            f.write("01\n")
        _openssl("ca", "-batch", "-config", "ca.cnf", "-cert", ca + ".pem", "-keyfile",
                 ca + ".key", "-in", name + ".csr", "-out", name + ".pem", "-notext",
                 "-startdate", "20200101000000Z", "-enddate", "20200102000000Z",
                 "-extfile", ext, cwd=d)
    else:
        _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey",
                 ca + ".key", "-CAcreateserial", "-out", name + ".pem", "-extfile", ext,
                 "-days", days, cwd=d)
    return os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tlspki"))
    ca = _ca(d, "ca")
    site_ec = _leaf(d, "ca", "site_ec", "ecdsa.site", "DNS:site.test,DNS:www.site.test")
    site_rsa = _leaf(d, "ca", "site_rsa", "rsa.site", "DNS:site.test,DNS:www.site.test",
                     kind="rsa")
    other = _leaf(d, "ca", "other", "other.test", "DNS:other.test")
    wild = _leaf(d, "ca", "wild", "wild", "DNS:*.wild.test")
    # a chain: root -> intermediate -> leaf; the cert file holds leaf + intermediate
    _ca(d, "root")
    _leaf(d, "root", "inter", "inter", ca_ext=True)
    chain_leaf = _leaf(d, "inter", "chained", "chained.test", "DNS:chained.test")
    with open(os.path.join(d, "chained_full.pem"), "w") as f:
        f.write(open(chain_leaf[0]).read() + open(os.path.join(d, "inter.pem")).read())
    expired = _leaf(d, "ca", "expired", "expired.test", "DNS:expired.test", days="-1")
    cca = _ca(d, "clientca")
    client = _leaf(d, "clientca", "client", "alice", client=True)
    _ca(d, "evilca")
    evil = _leaf(d, "evilca", "evil", "mallory", client=True)
    return dict(dir=d, ca=ca, site_ec=site_ec, site_rsa=site_rsa, other=other, wild=wild,
                root=os.path.join(d, "root.pem"),
                chained=(os.path.join(d, "chained_full.pem"), chain_leaf[1]),
                chained_leaf_only=chain_leaf, expired=expired, client_ca=cca, client=client,
                evil=evil)


def cert_entry(pair):
    return {"cert": pair[0], "key": pair[1]}


def tls_proxy(sluice, b, tls, workers=1, admin=None, bpf=None, **kw):  # noqa: F811
    cfg = sluice.proxy_config(b, workers=workers, **kw)
    if admin:
        cfg["admin"] = {"socket": admin}
    if bpf is not None:
        cfg["bpf"] = bpf
    cfg["listeners"][0]["tls"] = tls
    s = sluice.new()
    s.start(cfg)
    if admin:
        assert wait_for(lambda: os.path.exists(admin), 5 * SCALE), s.stderr()[-2000:]
    return s


def client_ctx(pki, ca=None, cert=None, minv=None, maxv=None, alpn=None, ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca or pki["ca"])
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    if minv:
        ctx.minimum_version = minv
    if maxv:
        ctx.maximum_version = maxv
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def tls_connect(port, ctx, sni="site.test", session=None):
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        return ctx.wrap_socket(raw, server_hostname=sni, session=session)
    except Exception:
        raw.close()
        raise


def get(s, target="/", headers=None, host="site.test"):
    c = HTTPClient(0, sock=s)
    return c, c.request("GET", target, headers=headers, host=host)


def peer_cn(s):
    cert = s.getpeercert()
    for rdn in cert["subject"]:
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


def counters(path):
    return workers(path)


# -- hostile ------------------------------------------------------------------------------
@pytest.fixture
def site(sluice, backend, pki, admin_sock, bpf):  # noqa: F811
    b = backend()
    sl = tls_proxy(sluice, b, {"certificates": [cert_entry(pki["site_ec"])],
                               "handshake_timeout": "700ms"},
                   admin=admin_sock, bpf=bpf)
    return sl, b


def test_garbage_instead_of_client_hello(site, admin_sock, pki):
    sl, b = site
    s = socket.create_connection(("127.0.0.1", sl.port), timeout=TIMEOUT)
    s.sendall(os.urandom(64) + b"\x16\x03\x01\xff\xff" + b"\x00" * 32)
    s.settimeout(TIMEOUT)
    try:
        data = s.recv(4096)
        while data:
            data = s.recv(4096)
    except ConnectionResetError:
        pass
    s.close()
    assert wait_for(lambda: total(counters(admin_sock), "tls_failed_protocol") == 1, TIMEOUT)
    assert b.saw_nothing()
    # still serving
    ts = tls_connect(sl.port, client_ctx(pki))
    c, r = get(ts)
    assert r.status == 200
    c.close()


def test_plain_http_to_tls_port_gets_400(site, admin_sock):
    sl, b = site
    s = socket.create_connection(("127.0.0.1", sl.port), timeout=TIMEOUT)
    s.sendall(b"GET / HTTP/1.1\r\nHost: site.test\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), data
    assert b"Connection: close" in head
    assert body == b"The plain HTTP request was sent to HTTPS port\n"
    assert int([ln for ln in head.split(b"\r\n") if ln.startswith(b"Content-Length")][0]
               .split(b":")[1]) == len(body)
    assert wait_for(lambda: total(counters(admin_sock), "tls_failed_plain_http") == 1, TIMEOUT)
    assert b.saw_nothing()
    assert sl.wait_log(lambda ln: "tls handshake failed" in ln and "plain HTTP" in ln)


def _client_hello_bytes(pki, sni="site.test"):
    """A real ClientHello, taken from a memory BIO handshake."""
    ctx = client_ctx(pki)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def test_client_closes_mid_handshake(site, admin_sock, pki):
    sl, b = site
    hello = _client_hello_bytes(pki)
    for cut in (0, 5, len(hello) // 2, len(hello)):
        s = socket.create_connection(("127.0.0.1", sl.port), timeout=TIMEOUT)
        s.sendall(hello[:cut])
        time.sleep(0.05)
        s.close()
    assert wait_for(lambda: total(counters(admin_sock), "tls_failed_closed") >= 4, TIMEOUT), \
        counters(admin_sock)
    assert wait_for(lambda: total(counters(admin_sock), "active") == 0, TIMEOUT)
    assert b.saw_nothing()


def test_slowloris_handshake_cut_at_timeout(site, admin_sock, pki):
    sl, b = site
    hello = _client_hello_bytes(pki)
    socks = []
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", sl.port), timeout=TIMEOUT)
        s.sendall(hello[:20])  # a record header and a bit: never the rest
        socks.append(s)
    t0 = time.monotonic()
    for s in socks:
        s.settimeout(10 * SCALE)
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
    waited = time.monotonic() - t0
    assert waited >= 0.5, "cut before handshake_timeout (700ms): %.2fs" % waited
    assert total(counters(admin_sock), "tls_failed_timeout") == 5
    assert total(counters(admin_sock), "active") == 0
    for s in socks:
        s.close()


def test_huge_client_hello_refused(site, admin_sock, pki):
    sl, b = site
    # a handshake message announcing 16 MB, sent in maximum-size records
    body = b"\x01" + struct.pack(">I", 16 << 20)[1:] + b"\x03\x03" + os.urandom(32)
    payload = body + b"\x00" * (16384 - len(body))
    s = socket.create_connection(("127.0.0.1", sl.port), timeout=TIMEOUT)
    try:
        for _ in range(64):
            s.sendall(b"\x16\x03\x01" + struct.pack(">H", len(payload)) + payload)
            payload = b"\x00" * 16384
    except (BrokenPipeError, ConnectionResetError):
        pass
    s.close()
    assert wait_for(lambda: total(counters(admin_sock), "tls_failed_protocol") +
                    total(counters(admin_sock), "tls_failed_closed") >= 1, TIMEOUT)
    assert total(counters(admin_sock), "tls_handshakes_full") == 0
    assert wait_for(lambda: total(counters(admin_sock), "active") == 0, TIMEOUT)
    ts = tls_connect(sl.port, client_ctx(pki))
    c, r = get(ts)
    assert r.status == 200
    c.close()


def _s_client(port, *args, stdin=b"", timeout=None):
    return subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port] +
                          list(args), input=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout or TIMEOUT)


def test_tls10_and_tls11_refused(site, admin_sock):
    sl, b = site
    for opt in ("-tls1", "-tls1_1"):
        p = _s_client(sl.port, opt, "-cipher", "DEFAULT:@SECLEVEL=0", "-servername",
                      "site.test")
        out = p.stdout.decode("latin-1")
        assert "Cipher is (NONE)" in out or p.returncode != 0, out
        assert "BEGIN CERTIFICATE" not in out and "Server certificate" not in out, out
    assert wait_for(lambda: total(counters(admin_sock), "tls_failed_protocol") >= 2, TIMEOUT)
    assert total(counters(admin_sock), "tls_handshakes_full") == 0
    assert b.saw_nothing()


def test_renegotiation_refused(site, admin_sock, pki):
    sl, b = site
    # TLS 1.2 (1.3 has no renegotiation): s_client's "R" command asks for one
    p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % sl.port,
                          "-tls1_2", "-servername", "site.test"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: total(counters(admin_sock), "tls_handshakes_full") == 1,
                        TIMEOUT)
        p.stdin.write(b"R\n")
        p.stdin.flush()
        out, _ = p.communicate(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    out = out.decode("latin-1")
    assert "RENEGOTIATING" in out, out
    assert "no renegotiation" in out, out  # refused with OpenSSL's no_renegotiation alert
    assert total(counters(admin_sock), "tls_handshakes_full") == 1
    ts = tls_connect(sl.port, client_ctx(pki))
    c, r = get(ts)
    assert r.status == 200
    c.close()


def test_unknown_sni_gets_the_default_certificate(sluice, backend, pki):
    b = backend()
    sl = tls_proxy(sluice, b, {"certificates": [cert_entry(pki["site_ec"]),
                                                cert_entry(pki["other"])]})
    ctx = client_ctx(pki)
    ctx.check_hostname = False
    for sni in ("nosuch.example", None):
        ts = tls_connect(sl.port, ctx, sni=sni)
        assert peer_cn(ts) == "ecdsa.site", sni
        c, r = get(ts)
        assert r.status == 200
        c.close()


def test_alpn_only_h2_refused_http11_selected(site, pki, admin_sock):
    sl, b = site
    with pytest.raises(ssl.SSLError) as e:
        tls_connect(sl.port, client_ctx(pki, alpn=["h2"]))
    assert "NO_APPLICATION_PROTOCOL" in str(e.value).upper() or "ALERT" in str(e.value).upper()
    ts = tls_connect(sl.port, client_ctx(pki, alpn=["h2", "http/1.1"]))
    assert ts.selected_alpn_protocol() == "http/1.1"
    c, r = get(ts)
    assert r.status == 200
    c.close()
    ts = tls_connect(sl.port, client_ctx(pki))  # no ALPN at all: still served
    assert ts.selected_alpn_protocol() is None
    c, r = get(ts)
    assert r.status == 200
    c.close()


# -- what must work -----------------------------------------------------------------------
def test_https_request_forwarded_with_x_forwarded_proto(site, pki, admin_sock):
    sl, b = site
    ts = tls_connect(sl.port, client_ctx(pki))
    assert ts.version() == "TLSv1.3"
    c = HTTPClient(0, sock=ts)
    for i in range(3):  # keep-alive over TLS
        r = c.request("GET", "/k%d" % i, host="site.test",
                      headers=[("X-Forwarded-Proto", "http")])
        assert r.status == 200
    c.close()
    assert b.wait_requests(3)
    for req in b.requests:
        assert req.headers_named("x-forwarded-proto") == ["https"], req
    ws = counters(admin_sock)
    assert total(ws, "tls_handshakes_full") == 1
    assert total(ws, "requests") == 3


def test_large_body_both_ways_over_tls(sluice, backend, pki):
    body = os.urandom(300000)

    def echo(conn, req):
        from backends import respond
        respond(conn, 200, body=req.body)
    b = backend(handler=echo)
    sl = tls_proxy(sluice, b, {"certificates": [cert_entry(pki["site_ec"])]})
    ts = tls_connect(sl.port, client_ctx(pki))
    c = HTTPClient(0, sock=ts)
    r = c.request("POST", "/echo", host="site.test", body=body)
    assert r.status == 200 and r.body == body
    r = c.request("POST", "/echo", host="site.test", body=body[:1000])
    assert r.status == 200 and r.body == body[:1000]
    c.close()


def test_sni_exact_wildcard_default(sluice, backend, pki):
    b = backend()
    sl = tls_proxy(sluice, b, {"certificates": [cert_entry(pki["other"]),
                                                cert_entry(pki["site_ec"]),
                                                cert_entry(pki["wild"])]})
    ctx = client_ctx(pki)
    for sni, cn in (("site.test", "ecdsa.site"), ("WWW.Site.Test", "ecdsa.site"),
                    ("a.wild.test", "wild"), ("other.test", "other.test")):
        ts = tls_connect(sl.port, ctx, sni=sni)
        assert peer_cn(ts) == cn, sni
        c, r = get(ts, host=sni)
        assert r.status == 200
        c.close()
    # "*.wild.test" covers one label only: a.b.wild.test gets the default
    nctx = client_ctx(pki)
    nctx.check_hostname = False
    ts = tls_connect(sl.port, nctx, sni="a.b.wild.test")
    assert peer_cn(ts) == "other.test"
    ts.close()


def test_rsa_and_ecdsa_side_by_side(sluice, backend, pki):
    b = backend()
    sl = tls_proxy(sluice, b, {"certificates": [cert_entry(pki["site_ec"]),
                                                cert_entry(pki["site_rsa"])]})
    for ciphers, cn in (("ECDHE-RSA-AES128-GCM-SHA256", "rsa.site"),
                        ("ECDHE-ECDSA-AES128-GCM-SHA256", "ecdsa.site")):
        ctx = client_ctx(pki, maxv=ssl.TLSVersion.TLSv1_2, ciphers=ciphers)
        ts = tls_connect(sl.port, ctx)
        assert peer_cn(ts) == cn, ciphers
        c, r = get(ts)
        assert r.status == 200
        c.close()
    # a TLS 1.3 client that can verify both gets one of them and is served
    ts = tls_connect(sl.port, client_ctx(pki))
    assert peer_cn(ts) in ("rsa.site", "ecdsa.site")
    ts.close()


def test_chain_is_sent(sluice, backend, pki):
    b = backend()
    sl = tls_proxy(sluice, b, {"certificates": [cert_entry(pki["chained"])]})
    # the client trusts the root only: it verifies only if the intermediate came along
    ts = tls_connect(sl.port, client_ctx(pki, ca=pki["root"]), sni="chained.test")
    c, r = get(ts, host="chained.test")
    assert r.status == 200
    c.close()


def test_chain_missing_fails_verification(sluice, backend, pki):
    """The test above could pass if the client found the intermediate elsewhere: without
    it in the file, the same client fails."""
    b = backend()
    sl = tls_proxy(sluice, b, {"certificates": [cert_entry(pki["chained_leaf_only"])]})
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_connect(sl.port, client_ctx(pki, ca=pki["root"]), sni="chained.test")


def test_min_version_13_refuses_12(sluice, backend, pki):
    b = backend()
    sl = tls_proxy(sluice, b, {"certificates": [cert_entry(pki["site_ec"])],
                               "min_version": "1.3"})
    with pytest.raises(ssl.SSLError):
        tls_connect(sl.port, client_ctx(pki, maxv=ssl.TLSVersion.TLSv1_2))
    ts = tls_connect(sl.port, client_ctx(pki))
    assert ts.version() == "TLSv1.3"
    ts.close()


def test_curl_over_tls(site, pki):
    sl, b = site
    p = subprocess.run(["curl", "-s", "--cacert", pki["ca"], "--resolve",
                        "site.test:%d:127.0.0.1" % sl.port,
                        "https://site.test:%d/curl" % sl.port, "-o", "/dev/null", "-w",
                        "%{http_code} %{http_version}"], stdout=subprocess.PIPE,
                       timeout=TIMEOUT)
    assert p.stdout.decode() == "200 1.1"


def test_access_log_tls_fields(sluice, backend, pki):
    b = backend()
    cfg = sluice.proxy_config(b)
    cfg["log"]["access_log_format"] = ("status=$status tls=$tls_version cipher=$tls_cipher "
                                       "sni=$tls_sni resumed=$tls_resumed")
    cfg["listeners"][0]["tls"] = {"certificates": [cert_entry(pki["site_ec"])]}
    sl = sluice.new()
    sl.start(cfg)
    ts = tls_connect(sl.port, client_ctx(pki))
    c, r = get(ts)
    assert r.status == 200
    c.close()
    e = sl.wait_access(1)
    assert e[0]["tls"] == "TLSv1.3"
    assert e[0]["cipher"].startswith("TLS_")
    assert e[0]["sni"] == "site.test"
    assert e[0]["resumed"] == "0"


# -- config errors ------------------------------------------------------------------------
def _check_config(sluice, backend, tls):
    from env import SLUICED
    b = backend()
    sl = sluice.new()
    cfg = sluice.proxy_config(b, sl=sl)
    cfg["listeners"][0]["tls"] = tls
    sl.write_config(cfg)
    p = subprocess.run([SLUICED, "-t", "-c", sl.config_path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=TIMEOUT)
    return p.returncode, p.stderr.decode()


@pytest.mark.parametrize("case", ["missing", "mismatch", "expired", "tls11", "badcipher",
                                  "h2", "no_ca", "keyfile"])
def test_config_errors_name_file_line_col(sluice, backend, pki, case):
    good = cert_entry(pki["site_ec"])
    tls = {
        "missing": {"certificates": [{"cert": "/nonexistent/c.pem", "key": good["key"]}]},
        "mismatch": {"certificates": [{"cert": good["cert"], "key": pki["other"][1]}]},
        "expired": {"certificates": [cert_entry(pki["expired"])]},
        "tls11": {"certificates": [good], "min_version": "1.1"},
        "badcipher": {"certificates": [good], "ciphers": "NOT-A-CIPHER"},
        "h2": {"certificates": [good], "alpn": ["h2"]},
        "no_ca": {"certificates": [good], "client_auth": {"mode": "required"}},
        "keyfile": {"certificates": [good],
                    "session_tickets": {"key_file": pki["ca"]}},
    }[case]
    rc, err = _check_config(sluice, backend, tls)
    assert rc == 1, err
    first = err.strip().splitlines()[0]
    parts = first.split(":")
    assert parts[0].endswith(".yaml") and parts[1].isdigit() and parts[2].isdigit(), first
    want = {"missing": "cannot open", "mismatch": "does not match", "expired": "expired",
            "tls11": "not offered", "badcipher": "names nothing", "h2": "not spoken",
            "no_ca": "needs ca", "keyfile": "keys of 80 bytes"}[case]
    assert want in first, first


# -- client certificates (mTLS) -------------------------------------------------------------
FORGED = [("X-Client-Subject", "CN=admin"), ("X-Client-Fingerprint", "00" * 32),
          ("x-client-subject", "CN=root")]


def _fingerprint(pem_path):
    der = ssl.PEM_cert_to_DER_cert(open(pem_path).read())
    return hashlib.sha256(der).hexdigest()


def _mtls(sluice, backend, pki, mode, admin=None, bpf=None, **extra):  # noqa: F811
    b = backend()
    ca = {"mode": mode, "ca": pki["client_ca"]}
    ca.update(extra)
    sl = tls_proxy(sluice, b, {"certificates": [cert_entry(pki["site_ec"])],
                               "client_auth": ca}, admin=admin, bpf=bpf)
    return sl, b


def _refused(port, ctx):
    """A request that must not be served: the handshake (or, in TLS 1.3, the first read
    after it) fails, or the connection ends without an answer."""
    try:
        ts = tls_connect(port, ctx)
    except (ssl.SSLError, ConnectionResetError):
        return True
    try:
        ts.sendall(b"GET / HTTP/1.1\r\nHost: site.test\r\n\r\n")
        data = ts.recv(4096)
        return data == b""
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True
    finally:
        ts.close()


def test_mtls_required_without_cert_refused(sluice, backend, pki, admin_sock, bpf):  # noqa: F811
    sl, b = _mtls(sluice, backend, pki, "required", admin=admin_sock, bpf=bpf)
    assert _refused(sl.port, client_ctx(pki))
    assert wait_for(lambda: total(counters(admin_sock), "tls_failed_client_cert") == 1, TIMEOUT)
    assert b.saw_nothing()


def test_mtls_required_cert_from_another_ca_refused(sluice, backend, pki, admin_sock, bpf):  # noqa: F811,E501
    sl, b = _mtls(sluice, backend, pki, "required", admin=admin_sock, bpf=bpf)
    assert _refused(sl.port, client_ctx(pki, cert=pki["evil"]))
    assert wait_for(lambda: total(counters(admin_sock), "tls_failed_client_cert") == 1, TIMEOUT)
    assert b.saw_nothing()


def test_mtls_required_identity_forwarded_forged_stripped(sluice, backend, pki):
    sl, b = _mtls(sluice, backend, pki, "required")
    ts = tls_connect(sl.port, client_ctx(pki, cert=pki["client"]))
    c = HTTPClient(0, sock=ts)
    for _ in range(2):  # the identity is made once per connection, sent on each request
        r = c.request("GET", "/who", host="site.test", headers=FORGED)
        assert r.status == 200
    c.close()
    assert b.wait_requests(2)
    for req in b.requests:
        assert req.headers_named("x-client-subject") == ["CN=alice"], req
        assert req.headers_named("x-client-fingerprint") == [_fingerprint(pki["client"][0])]


def test_forged_identity_stripped_without_client_auth(site, pki):
    sl, b = site
    ts = tls_connect(sl.port, client_ctx(pki, cert=pki["client"]))  # not asked for: unused
    c, r = get(ts, headers=FORGED)
    assert r.status == 200
    c.close()
    assert b.wait_requests(1)
    req = b.requests[0]
    assert not req.has("x-client-subject") and not req.has("x-client-fingerprint"), req


def test_mtls_optional(sluice, backend, pki):
    sl, b = _mtls(sluice, backend, pki, "optional", subject_header="X-SSL-Subject",
                  fingerprint_header="X-SSL-FP")
    ts = tls_connect(sl.port, client_ctx(pki))  # no certificate: served, no identity
    c, r = get(ts, headers=[("X-SSL-Subject", "CN=admin"), ("X-Client-Subject", "kept")])
    assert r.status == 200
    c.close()
    ts = tls_connect(sl.port, client_ctx(pki, cert=pki["client"]))
    c, r = get(ts, headers=[("X-SSL-FP", "ff")])
    assert r.status == 200
    c.close()
    assert b.wait_requests(2)
    first, second = b.requests
    assert not first.has("x-ssl-subject") and not first.has("x-ssl-fp"), first
    # only the configured names are sluice's: others pass as the client sent them
    assert first.headers_named("x-client-subject") == ["kept"]
    assert second.headers_named("x-ssl-subject") == ["CN=alice"]
    assert second.headers_named("x-ssl-fp") == [_fingerprint(pki["client"][0])]
    # a certificate that is sent must verify, even when optional
    assert _refused(sl.port, client_ctx(pki, cert=pki["evil"]))


# -- resumption across workers, ticket rotation -------------------------------------------
def _session_of(ts):
    """The session to resume (TLS 1.3 tickets arrive after the handshake: read first)."""
    c, r = get(ts)
    assert r.status == 200
    sess = ts.session
    c.close()
    return sess


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_resumption_across_workers(sluice, backend, pki, admin_sock, bpf, version):  # noqa: F811
    b = backend()
    bpf = dict(bpf, steering="off")  # the kernel's reuseport hash spreads connections
    sl = tls_proxy(sluice, b, {"certificates": [cert_entry(pki["site_ec"])]}, workers=2,
                   admin=admin_sock, bpf=bpf)
    maxv = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
    ctx = client_ctx(pki, maxv=maxv)
    sess = _session_of(tls_connect(sl.port, ctx))
    resumed = 0
    for _ in range(100):
        ts = tls_connect(sl.port, ctx, session=sess)
        assert ts.version() == ("TLSv1.2" if version == "1.2" else "TLSv1.3")
        resumed += ts.session_reused
        sess = _session_of(ts)
    assert resumed == 100
    ws = counters(admin_sock)
    assert total(ws, "tls_handshakes_full") == 1, ws
    assert total(ws, "tls_handshakes_resumed") == 100, ws
    # both workers resumed tickets: the keys are the process's, not a worker's
    assert all(w["tls_handshakes_resumed"] > 0 for w in ws), ws


def test_tls13_resumed_connection_gets_a_new_ticket(sluice, backend, pki, tmp_path):
    """TLS 1.3 clients use a ticket once (RFC 8446 C.4; wrk and openssl s_client keep
    only the newest): a resumed connection must hand out a new ticket, or every other
    reconnect is a full handshake. s_client writes -sess_out only when a ticket came."""
    b = backend()
    sl = tls_proxy(sluice, b, {"certificates": [cert_entry(pki["site_ec"])]})
    req = b"GET / HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n"
    prev = None
    for i in range(5):
        out = str(tmp_path / ("s%d.sess" % i))
        args = ["-tls1_3", "-servername", "site.test", "-CAfile", pki["ca"], "-ign_eof",
                "-sess_out", out]
        if prev:
            args += ["-sess_in", prev]
        p = _s_client(sl.port, *args, stdin=req)
        text = p.stdout.decode("latin-1")
        assert "HTTP/1.1 200" in text, text
        assert ("Reused, TLSv1.3" if prev else "New, TLSv1.3") in text, (i, text)
        assert os.path.exists(out), "connection %d handed out no ticket" % i
        prev = out


def _admin_post(path, target):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(path)
    c = HTTPClient(0, sock=s)
    try:
        return c.request("POST", target, host="localhost")
    finally:
        c.close()


def test_ticket_rotation(sluice, backend, pki, admin_sock, bpf):  # noqa: F811
    b = backend()
    sl = tls_proxy(sluice, b, {"certificates": [cert_entry(pki["site_ec"])]},
                   admin=admin_sock, bpf=bpf)
    ctx = client_ctx(pki, maxv=ssl.TLSVersion.TLSv1_2)
    s0 = _session_of(tls_connect(sl.port, ctx))
    r = _admin_post(admin_sock, "/tls/rotate-tickets")
    assert r.status == 200 and r.json() == {"rotated": 1}
    ts = tls_connect(sl.port, ctx, session=s0)
    assert ts.session_reused, "a ticket from before one rotation must resume"
    s1 = _session_of(ts)  # renewed under the new key
    r = _admin_post(admin_sock, "/tls/rotate-tickets")
    assert r.status == 200
    ts = tls_connect(sl.port, ctx, session=s0)
    assert not ts.session_reused, "a ticket from before two rotations must not resume"
    ts.close()
    ts = tls_connect(sl.port, ctx, session=s1)
    assert ts.session_reused
    ts.close()
    # TLS 1.3 PSK tickets follow the same keys
    ctx13 = client_ctx(pki)
    t0 = _session_of(tls_connect(sl.port, ctx13))
    _admin_post(admin_sock, "/tls/rotate-tickets")
    _admin_post(admin_sock, "/tls/rotate-tickets")
    ts = tls_connect(sl.port, ctx13, session=t0)
    _session_of(ts)
    assert not ts.session_reused


def test_ticket_key_file_shared_by_two_daemons(sluice, backend, pki, tmp_path):
    """Two nodes with one key file: a ticket from one resumes on the other."""
    keys = tmp_path / "ticket.keys"
    keys.write_bytes(os.urandom(80) + os.urandom(80))
    b = backend()
    tls = {"certificates": [cert_entry(pki["site_ec"])],
           "session_tickets": {"key_file": str(keys)}}
    one = tls_proxy(sluice, b, tls)
    two = tls_proxy(sluice, b, tls)
    ctx = client_ctx(pki, maxv=ssl.TLSVersion.TLSv1_2)
    sess = _session_of(tls_connect(one.port, ctx))
    ts = tls_connect(two.port, ctx, session=sess)
    assert ts.session_reused
    ts.close()
    # and a daemon with keys of its own does not take it
    three = tls_proxy(sluice, b, {"certificates": [cert_entry(pki["site_ec"])]})
    ts = tls_connect(three.port, ctx, session=sess)
    assert not ts.session_reused
    ts.close()


def test_tickets_disabled(sluice, backend, pki, admin_sock, bpf):  # noqa: F811
    b = backend()
    sl = tls_proxy(sluice, b, {"certificates": [cert_entry(pki["site_ec"])],
                               "session_tickets": {"enabled": False}},
                   admin=admin_sock, bpf=bpf)
    for ctx in (client_ctx(pki, maxv=ssl.TLSVersion.TLSv1_2), client_ctx(pki)):
        sess = _session_of(tls_connect(sl.port, ctx))
        ts = tls_connect(sl.port, ctx, session=sess)
        assert not ts.session_reused
        ts.close()
    assert total(counters(admin_sock), "tls_handshakes_resumed") == 0


# -- certificate reload ---------------------------------------------------------------------
def test_reload_certificates_without_dropping_connections(sluice, backend, pki, tmp_path,
                                                           admin_sock, bpf):  # noqa: F811
    crt, key = str(tmp_path / "live.pem"), str(tmp_path / "live.key")
    shutil.copy(pki["site_ec"][0], crt)
    shutil.copy(pki["site_ec"][1], key)
    b = backend()
    sl = tls_proxy(sluice, b, {"certificates": [{"cert": crt, "key": key}]},
                   admin=admin_sock, bpf=bpf)
    ctx = client_ctx(pki, maxv=ssl.TLSVersion.TLSv1_2)
    keep = tls_connect(sl.port, ctx)
    assert peer_cn(keep) == "ecdsa.site"
    kc = HTTPClient(0, sock=keep)
    assert kc.request("GET", "/1", host="site.test").status == 200
    sess = keep.session
    # a new certificate (and key) under the same paths, then SIGHUP
    shutil.copy(pki["site_rsa"][0], crt + ".tmp")
    shutil.copy(pki["site_rsa"][1], key + ".tmp")
    os.replace(key + ".tmp", key)
    os.replace(crt + ".tmp", crt)
    sl.send_signal(signal.SIGHUP)
    assert sl.wait_log(lambda ln: "config reloaded" in ln)
    fresh = tls_connect(sl.port, client_ctx(pki))
    assert peer_cn(fresh) == "rsa.site"
    fresh.close()
    # the open keep-alive connection goes on, on its old context
    assert kc.request("GET", "/2", host="site.test").status == 200
    # generated ticket keys survive a reload: its session still resumes
    ts = tls_connect(sl.port, ctx, session=sess)
    assert ts.session_reused
    ts.close()
    # a bad new certificate (key of another one) is rejected; the last good one serves
    shutil.copy(pki["other"][1], key + ".tmp")
    os.replace(key + ".tmp", key)
    r = _admin_post(admin_sock, "/reload")
    assert r.status == 400, r
    assert "does not match" in r.body.decode(), r.body
    assert sl.wait_log(lambda ln: "reload rejected" in ln and "does not match" in ln)
    fresh = tls_connect(sl.port, client_ctx(pki))
    assert peer_cn(fresh) == "rsa.site"
    fresh.close()
    assert kc.request("GET", "/3", host="site.test").status == 200
    kc.close()


def test_metrics_count_tls(site, pki, admin_sock):
    sl, b = site
    ts = tls_connect(sl.port, client_ctx(pki))
    _session_of(ts)
    s = socket.create_connection(("127.0.0.1", sl.port), timeout=TIMEOUT)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    s.recv(4096)
    s.close()
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    u.settimeout(TIMEOUT)
    u.connect(admin_sock)
    c = HTTPClient(0, sock=u)
    r = c.request("GET", "/metrics", host="localhost")
    c.close()
    text = r.body.decode()
    assert 'sluice_tls_handshakes_total{worker="0",kind="full"} 1' in text, text
    assert 'sluice_tls_handshakes_total{worker="0",kind="resumed"} 0' in text
    assert wait_for(lambda: 'reason="plain_http"} 1' in text, 1), text


def test_ticket_does_not_bypass_client_auth(sluice, backend, pki, tmp_path):
    """Hostile: a ticket issued where no client certificate was asked for, presented to a
    listener that requires one (they share a key file), must not skip the check."""
    keys = tmp_path / "ticket.keys"
    keys.write_bytes(os.urandom(80))
    b = backend()
    base = {"certificates": [cert_entry(pki["site_ec"])],
            "session_tickets": {"key_file": str(keys)}}
    open_l = tls_proxy(sluice, b, dict(base))
    strict = tls_proxy(sluice, b, dict(base, client_auth={"mode": "required",
                                                          "ca": pki["client_ca"]}))
    for maxv in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_ctx(pki, maxv=maxv)
        sess = _session_of(tls_connect(open_l.port, ctx))
        try:
            ts = tls_connect(strict.port, ctx, session=sess)
        except (ssl.SSLError, ConnectionResetError):
            continue
        try:
            assert not ts.session_reused
            ts.sendall(b"GET / HTTP/1.1\r\nHost: site.test\r\n\r\n")
            assert ts.recv(4096) == b""
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            pass
        finally:
            ts.close()
    assert len(b.requests) == 2  # the two sessions taken from the open listener only
