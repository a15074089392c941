"""TLS termination against hostile clients, beyond test_tls_term.py.

ClientHellos built byte by byte (SNI names that are empty, 255+ bytes long, hold a NUL,
are upper case, end in a dot; ALPN lists that are empty, malformed or huge), a handshake
trickled one byte at a time (cut at handshake_timeout, not kept alive by each byte),
0-RTT (never accepted), SNI bytes that must be escaped in the access log, identity
headers forged in every spelling (case, duplicates, underscores for dashes, trailers,
listed in Connection), and resumption that must not outlive what a client certificate
was verified against (a CA replaced on reload, a certificate that expired since)."""
import os
import signal
import socket
import ssl
import struct
import subprocess
import time

import pytest

from client import HTTPClient, encode_chunked
from daemon import wait_for
from env import SCALE, TIMEOUT
from test_pool import admin_sock, bpf, total  # noqa: F401  (fixtures, helpers)
from test_tls_term import (_client_hello_bytes, _fingerprint, _leaf, _openssl,  # noqa: F401
                           _s_client, _session_of, cert_entry, client_ctx, counters, get,
                           pki, site, tls_connect, tls_proxy)


# -- ClientHellos by hand -------------------------------------------------------------------
def _ext(kind, data):
    return struct.pack(">HH", kind, len(data)) + data


def _sni_ext(name):
    entry = b"\x00" + struct.pack(">H", len(name)) + name
    return _ext(0, struct.pack(">H", len(entry)) + entry)


def _alpn_ext(names=None, raw=None):
    if raw is None:
        body = b"".join(bytes([len(n)]) + n for n in names)
        raw = struct.pack(">H", len(body)) + body
    return _ext(16, raw)


def _hello(exts):
    """A TLS 1.2 ClientHello (ECDHE-ECDSA-AES128-GCM, X25519/P-256) with these
    extensions."""
    exts = (exts + _ext(10, b"\x00\x04\x00\x1d\x00\x17") + _ext(11, b"\x01\x00") +
            _ext(13, b"\x00\x04\x04\x03\x08\x04"))
    body = (b"\x03\x03" + os.urandom(32) + b"\x00" + b"\x00\x02\xc0\x2b" + b"\x01\x00" +
            struct.pack(">H", len(exts)) + exts)
    hs = b"\x01" + struct.pack(">I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def _answer(port, hello):
    """The first record the server answers a ClientHello with: (type, first bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        s.sendall(hello)
        data = b""
        while len(data) < 7:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data[:1], data
    except ConnectionResetError:
        return b"", b""
    finally:
        s.close()


def _still_serves(sl, pki):
    ts = tls_connect(sl.port, client_ctx(pki))
    c, r = get(ts)
    assert r.status == 200
    c.close()


SNI_ODD = [b"", b".", b"..", b"a.", b"SITE.TEST", b"site.test.", b"a" * 254,
           b"a" * 255, b"a" * 256, b"a" * 1000, b"site.test\x00evil.test",
           b"*.wild.test", b"xn--bcher-kva.site.test", b"\xff\xfe.site.test",
           b"a\r\nb.site.test", b"." * 255, b"a." * 127]


def test_sni_odd_names_do_not_crash(site, admin_sock, pki):
    sl, b = site
    for name in SNI_ODD:
        kind, data = _answer(sl.port, _hello(_sni_ext(name)))
        # a ServerHello (the default certificate) or an alert; never a dead worker
        assert kind in (b"\x16", b"\x15", b""), (name, data)
        if len(name) > 255 or b"\x00" in name:
            assert kind != b"\x16", ("OpenSSL refuses this SNI", name, data)
        elif name in (b"SITE.TEST", b"site.test.", b"a" * 254, b"."):
            assert kind == b"\x16", ("served with a certificate", name, data)
    _still_serves(sl, pki)
    assert total(counters(admin_sock), "active") <= 1


def test_sni_case_and_trailing_dot_pick_the_certificate(sluice, backend, pki):
    b = backend()
    sl = tls_proxy(sluice, b, {"certificates": [cert_entry(pki["other"]),
                                                cert_entry(pki["site_ec"])]})
    for name in ("SITE.TEST", "Site.Test.", "WWW.site.TEST"):
        p = _s_client(sl.port, "-servername", name, "-CAfile", pki["ca"], stdin=b"Q\n")
        out = p.stdout.decode("latin-1")
        assert "CN = ecdsa.site" in out, (name, out[-1500:])
    p = _s_client(sl.port, "-servername", "unknown.test", stdin=b"Q\n")
    assert "CN = other.test" in p.stdout.decode("latin-1")


ALPN_BAD = [
    _alpn_ext(raw=b""),                       # no list length at all
    _alpn_ext(raw=b"\x00\x00"),               # an empty list
    _alpn_ext(raw=b"\x00\x01\x00"),           # one empty name
    _alpn_ext(raw=b"\x00\x05\x08http/"),      # a name longer than the list
    _alpn_ext(raw=b"\x00\x09\x08http/1.1\x00"),  # list length short by one
    _alpn_ext(raw=b"\xff\xff\x08http/1.1"),   # list length past the extension
    _alpn_ext([b"x" * 255]),                  # one 255-byte name
    _alpn_ext([b"h2"] * 3000 + [b"http/1.1"]),  # 9000 bytes of names, ours last
    _alpn_ext([bytes([i % 256]) * (1 + i % 40) for i in range(600)]),
    _alpn_ext([b"http/1.1"]) + _alpn_ext([b"http/1.1"]),  # the extension twice
]


def test_alpn_malformed_or_huge_lists(site, admin_sock, pki):
    sl, b = site
    for i, ext in enumerate(ALPN_BAD):
        hello = _hello(_sni_ext(b"site.test") + ext)
        if len(hello) > 16384 + 5:
            # more than one record: split the handshake message across records
            hs = hello[5:]
            hello = b"".join(b"\x16\x03\x01" + struct.pack(">H", len(hs[k:k + 16384])) +
                             hs[k:k + 16384] for k in range(0, len(hs), 16384))
        kind, data = _answer(sl.port, hello)
        assert kind in (b"\x16", b"\x15", b""), (i, data)
    # the huge list that ends with http/1.1 is a list we can answer
    kind, _ = _answer(sl.port, _hello(_sni_ext(b"site.test") +
                                      _alpn_ext([b"h2"] * 3000 + [b"http/1.1"])))
    assert kind == b"\x16"
    _still_serves(sl, pki)


# -- handshake timeout ----------------------------------------------------------------------
def test_handshake_trickled_one_byte_at_a_time_is_cut(site, admin_sock, pki):
    """Each byte is progress for OpenSSL, never for the deadline: 700 ms after the accept,
    the connection goes, however steadily the bytes come."""
    sl, b = site
    hello = _client_hello_bytes(pki)
    s = socket.create_connection(("127.0.0.1", sl.port), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.monotonic()
    cut = None
    for i in range(len(hello)):
        try:
            s.sendall(hello[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            cut = time.monotonic() - t0
            break
        s.settimeout(0.05)
        try:
            if s.recv(4096) == b"":
                cut = time.monotonic() - t0
                break
        except socket.timeout:
            pass
        except ConnectionResetError:
            cut = time.monotonic() - t0
            break
        if time.monotonic() - t0 > 20 * SCALE:
            break
    s.close()
    assert cut is not None, "a trickled handshake was kept open %.1fs" % (time.monotonic() - t0)
    assert cut >= 0.5, cut
    assert cut < 5 * SCALE, "cut after %.2fs (handshake_timeout 700ms)" % cut
    assert wait_for(lambda: total(counters(admin_sock), "tls_failed_timeout") == 1, TIMEOUT)
    assert total(counters(admin_sock), "tls_handshakes_full") == 0


# -- 0-RTT ----------------------------------------------------------------------------------
def test_early_data_never_accepted(sluice, backend, pki, tmp_path):
    b = backend()
    sl = tls_proxy(sluice, b, {"certificates": [cert_entry(pki["site_ec"])]})
    sess = str(tmp_path / "sess.pem")
    req = b"GET /once HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n"
    p = _s_client(sl.port, "-servername", "site.test", "-sess_out", sess, "-ign_eof",
                  stdin=req)
    assert b"200" in p.stdout, p.stdout[-1500:]
    text = subprocess.run(["openssl", "sess_id", "-in", sess, "-text", "-noout"],
                          stdout=subprocess.PIPE, check=True).stdout.decode()
    assert "Max Early Data: 0" in text, text
    early = tmp_path / "early.txt"
    early.write_bytes(b"GET /replayed HTTP/1.1\r\nHost: site.test\r\n\r\n")
    p = _s_client(sl.port, "-servername", "site.test", "-sess_in", sess, "-early_data",
                  str(early), stdin=b"")
    out = p.stdout.decode("latin-1")
    assert "Early data was accepted" not in out, out[-1500:]
    time.sleep(0.3)
    assert all(r.path != "/replayed" for r in b.requests), [r.target for r in b.requests]


# -- logs -----------------------------------------------------------------------------------
def test_sni_bytes_escaped_in_access_log(sluice, backend, pki):
    b = backend()
    cfg = sluice.proxy_config(b)
    cfg["log"]["access_log_format"] = "status=$status sni=$tls_sni"
    cfg["listeners"][0]["tls"] = {"certificates": [cert_entry(pki["site_ec"])]}
    sl = sluice.new()
    sl.start(cfg)
    hostile = 'x" status=999 y=\x1b[31m\nforged=1 '
    p = _s_client(sl.port, "-servername", hostile, "-ign_eof",
                  stdin=b"GET / HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
    assert b"HTTP/1.1 200" in p.stdout, p.stdout[-1500:]
    assert wait_for(lambda: len(sl.access_lines()) >= 1, TIMEOUT)
    lines = sl.access_lines()
    assert len(lines) == 1, lines
    e = sl.access_entries()[0]
    assert e["status"] == "200", lines
    assert "forged" not in e, lines
    assert "\x1b" not in lines[0], lines


# -- identity headers -----------------------------------------------------------------------
def _mtls_site(sluice, backend, pki, mode="required"):
    b = backend()
    sl = tls_proxy(sluice, b, {"certificates": [cert_entry(pki["site_ec"])],
                               "client_auth": {"mode": mode, "ca": pki["client_ca"]}})
    return sl, b


SPELLINGS = [("X-Client-Subject", "CN=admin"), ("x-client-subject", "CN=root"),
             ("X-CLIENT-SUBJECT", "CN=root"), ("X-Client-Subject", "CN=dup"),
             ("X_Client_Subject", "CN=underscore"), ("x_client-subject", "CN=mixed"),
             ("X-Client_Fingerprint", "00" * 32), ("X_CLIENT_FINGERPRINT", "11" * 32),
             ("x-client-fingerprint", "22" * 32)]


def _identity_names(req):
    """Every header the backend got that a CGI-style gateway (Apache, WSGI, Rack,
    FastCGI bridges) would read as one of the identity headers: '_' and '-' alike."""
    out = {}
    for n, v in req.headers:
        key = n.lower().replace("_", "-")
        if key in ("x-client-subject", "x-client-fingerprint"):
            out.setdefault(key, []).append((n, v))
    return out


@pytest.mark.parametrize("mode", ["required", "optional", "none"])
def test_identity_headers_forged_in_every_spelling(sluice, backend, pki, mode):
    if mode == "none":
        b = backend()
        sl = tls_proxy(sluice, b, {"certificates": [cert_entry(pki["site_ec"])]})
    else:
        sl, b = _mtls_site(sluice, backend, pki, mode)
    ts = tls_connect(sl.port, client_ctx(pki, cert=pki["client"] if mode == "required"
                                         else None))
    c = HTTPClient(0, sock=ts)
    r = c.request("GET", "/a", host="site.test", headers=SPELLINGS)
    assert r.status == 200
    # listed as hop-by-hop by the client: sluice's own copies must still go out
    r = c.request("GET", "/b", host="site.test",
                  headers=[("Connection", "X-Client-Subject, X-Client-Fingerprint")] +
                  SPELLINGS)
    assert r.status == 200
    c.close()
    assert b.wait_requests(2)
    for req in b.requests:
        got = _identity_names(req)
        if mode == "required":
            assert got == {"x-client-subject": [("X-Client-Subject", "CN=alice")],
                           "x-client-fingerprint": [
                               ("X-Client-Fingerprint", _fingerprint(pki["client"][0]))]}, got
        else:
            assert got == {}, got


def test_identity_forged_in_trailers_dropped(sluice, backend, pki):
    sl, b = _mtls_site(sluice, backend, pki)
    ts = tls_connect(sl.port, client_ctx(pki, cert=pki["client"]))
    c = HTTPClient(0, sock=ts)
    body = encode_chunked(b"hello", 5)
    assert body.endswith(b"0\r\n\r\n")
    body = body[:-2] + (b"X-Client-Subject: CN=admin\r\nx_client_fingerprint: " +
                        b"00" * 32 + b"\r\nX-Other: kept\r\n\r\n")
    c.send(b"POST /t HTTP/1.1\r\nHost: site.test\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    r = c.read_response()
    assert r.status == 200
    c.close()
    assert b.wait_requests(1)
    req = b.requests[0]
    assert req.body == b"hello"
    trailers = [t.split(":")[0].strip().lower().replace("_", "-")
                for t in getattr(req, "trailers", [])]
    assert "x-client-subject" not in trailers and "x-client-fingerprint" not in trailers, \
        req.raw_body
    assert "x-other" in trailers, req.raw_body


# -- resumption and client certificates -----------------------------------------------------
def _expiring_client(d, seconds):
    """A client certificate from clientca that expires `seconds` from now."""
    name = "soon%d" % int(time.time() * 1000)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name, cwd=d)
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    with open(os.path.join(d, name + ".cnf"), "w") as f:
        f.write("[ca]\ndefault_ca=c\n[c]\ndatabase=%s.idx\nnew_certs_dir=.\n"
                "serial=%s.srl\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n"
                % (name, name))
    open(os.path.join(d, name + ".idx"), "w").close()
    with open(os.path.join(d, name + ".srl"), "w") as f:
        f.write("1000\n")
    fmt = "%Y%m%d%H%M%SZ"
    start = time.strftime(fmt, time.gmtime(time.time() - 3600))
    end = time.strftime(fmt, time.gmtime(time.time() + seconds))
    _openssl("ca", "-batch", "-config", name + ".cnf", "-cert", "clientca.pem", "-keyfile",
             "clientca.key", "-in", name + ".csr", "-out", name + ".pem", "-notext",
             "-startdate", start, "-enddate", end, "-extfile", ext, cwd=d)
    return os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")


def _served(port, ctx, session):
    """(resumed, status or None): a request on a connection offering session."""
    try:
        ts = tls_connect(port, ctx, session=session)
    except (ssl.SSLError, ConnectionResetError):
        return False, None
    try:
        c = HTTPClient(0, sock=ts)
        r = c.request("GET", "/", host="site.test")
        return ts.session_reused, r.status
    except Exception:
        return ts.session_reused, None
    finally:
        ts.close()


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_resumption_refused_once_the_client_certificate_expired(sluice, backend, pki,
                                                                 version):
    """A ticket carries the verified certificate; a resumption skips the verification.
    A certificate that has expired since must not be let in by its ticket."""
    sl, b = _mtls_site(sluice, backend, pki)
    cert = _expiring_client(pki["dir"], 4)
    maxv = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
    ctx = client_ctx(pki, cert=cert, maxv=maxv)
    sess = _session_of(tls_connect(sl.port, ctx))
    reused, status = _served(sl.port, ctx, sess)
    assert reused and status == 200  # still valid: resumes
    time.sleep(5)
    reused, status = _served(sl.port, ctx, sess)
    assert status is None, "an expired client certificate was served (resumed=%s)" % reused


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_resumption_refused_after_the_client_ca_changed(sluice, backend, pki, tmp_path,
                                                         version):
    """The operator replaces the client CA file (a CA compromised) and reloads: tickets
    issued to certificates of the old CA must not resume."""
    ca = str(tmp_path / "clients.pem")
    with open(ca, "w") as f:
        f.write(open(pki["client_ca"]).read())
    b = backend()
    sl = tls_proxy(sluice, b, {"certificates": [cert_entry(pki["site_ec"])],
                               "client_auth": {"mode": "required", "ca": ca}})
    maxv = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
    ctx = client_ctx(pki, cert=pki["client"], maxv=maxv)
    sess = _session_of(tls_connect(sl.port, ctx))
    with open(ca + ".tmp", "w") as f:
        f.write(open(os.path.join(pki["dir"], "evilca.pem")).read())
    os.replace(ca + ".tmp", ca)
    n = len([ln for ln in sl.log_lines() if "config reloaded" in ln])
    sl.send_signal(signal.SIGHUP)
    assert wait_for(lambda: len([ln for ln in sl.log_lines() if "config reloaded" in ln]) > n,
                    TIMEOUT)
    reused, status = _served(sl.port, ctx, sess)
    assert status is None, "a certificate of the removed CA was served (resumed=%s)" % reused
    # a certificate of the new CA gets in
    ctx2 = client_ctx(pki, cert=pki["evil"], maxv=maxv)
    assert _served(sl.port, ctx2, None)[1] == 200


# -- ticket key files -----------------------------------------------------------------------
def _admin_post(path, target):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(path)
    c = HTTPClient(0, sock=s)
    try:
        return c.request("POST", target, host="localhost")
    finally:
        c.close()


def test_key_file_broken_at_rotation_keeps_the_keys(sluice, backend, pki, tmp_path,
                                                     admin_sock, bpf):  # noqa: F811
    """A key file cut short (a bad deploy) when it is read again: the rotation fails with
    the file's name, the keys in use stay, and no key byte reaches a log or an answer."""
    keys = tmp_path / "ticket.keys"
    key = os.urandom(80)
    keys.write_bytes(key)
    b = backend()
    sl = tls_proxy(sluice, b, {"certificates": [cert_entry(pki["site_ec"])],
                               "session_tickets": {"key_file": str(keys)}},
                   admin=admin_sock, bpf=bpf)
    ctx = client_ctx(pki, maxv=ssl.TLSVersion.TLSv1_2)
    sess = _session_of(tls_connect(sl.port, ctx))
    keys.write_bytes(key[:50])
    r = _admin_post(admin_sock, "/tls/rotate-tickets")
    assert r.status == 500, r
    assert str(keys) in r.body.decode(), r.body
    ts = tls_connect(sl.port, ctx, session=sess)
    assert ts.session_reused, "the keys in use were dropped by a failed rotation"
    ts.close()
    # a reload with the bad file is refused at load, the keys still serve
    sl.send_signal(signal.SIGHUP)
    assert sl.wait_log(lambda ln: "reload rejected" in ln and "ticket.keys" in ln)
    ts = tls_connect(sl.port, ctx, session=sess)
    assert ts.session_reused
    ts.close()
    text = sl.stderr() + r.body.decode("latin-1")
    for secret in (key[16:48], key[48:80]):
        assert secret.hex() not in text.lower()
        assert secret.hex()[:16] not in text.lower()


# -- after the handshake --------------------------------------------------------------------
def test_bytes_after_close_notify_are_not_requests(site, pki):
    sl, b = site
    ts = tls_connect(sl.port, client_ctx(pki, maxv=ssl.TLSVersion.TLSv1_2))
    c, r = get(ts, target="/first")
    assert r.status == 200
    raw = ts.unwrap()  # close_notify both ways
    try:
        raw.sendall(b"GET /after HTTP/1.1\r\nHost: site.test\r\n\r\n")
        raw.settimeout(TIMEOUT)
        data = raw.recv(4096)
        while data:
            assert b"HTTP/1.1" not in data, data
            data = raw.recv(4096)
    except (BrokenPipeError, ConnectionResetError):
        pass
    raw.close()
    time.sleep(0.3)
    assert [q.path for q in b.requests] == ["/first"]
    # plaintext in the middle of a TLS connection: the record fails, nothing is served
    ts = tls_connect(sl.port, client_ctx(pki))
    c, r = get(ts, target="/second")
    assert r.status == 200
    fd = socket.socket(fileno=os.dup(ts.fileno()))
    fd.sendall(b"GET /plain HTTP/1.1\r\nHost: site.test\r\n\r\n")
    fd.settimeout(TIMEOUT)
    try:
        while fd.recv(4096):
            pass
    except ConnectionResetError:
        pass
    fd.close()
    ts.close()
    time.sleep(0.3)
    assert [q.path for q in b.requests] == ["/first", "/second"]
    _still_serves(sl, pki)


# -- certificate reload under load ----------------------------------------------------------
def test_certificate_reload_under_load_drops_nothing(sluice, backend, pki, tmp_path):
    import shutil
    import threading
    crt, key = str(tmp_path / "live.pem"), str(tmp_path / "live.key")
    shutil.copy(pki["site_ec"][0], crt)
    shutil.copy(pki["site_ec"][1], key)
    b = backend()
    sl = tls_proxy(sluice, b, {"certificates": [{"cert": crt, "key": key}]}, workers=2)
    stop = threading.Event()
    errors, done = [], [0]

    def load(keepalive):
        while not stop.is_set():
            try:
                ts = tls_connect(sl.port, client_ctx(pki))
                c = HTTPClient(0, sock=ts)
                for _ in range(5 if keepalive else 1):
                    r = c.request("GET", "/", host="site.test")
                    assert r.status == 200, r.status
                    done[0] += 1
                c.close()
            except Exception as e:  # noqa: BLE001  (every failure counts)
                errors.append(repr(e))
    threads = [threading.Thread(target=load, args=(k,)) for k in (True, False, False)]
    for t in threads:
        t.start()
    try:
        pairs = [pki["site_rsa"], pki["site_ec"]] * 2
        for i, (c_src, k_src) in enumerate(pairs):
            time.sleep(0.4)
            shutil.copy(c_src, crt + ".tmp")
            shutil.copy(k_src, key + ".tmp")
            os.replace(key + ".tmp", key)
            os.replace(crt + ".tmp", crt)
            sl.send_signal(signal.SIGHUP)
            assert wait_for(lambda: len([ln for ln in sl.log_lines()
                                         if "config reloaded" in ln]) > i, TIMEOUT)
        time.sleep(0.4)
    finally:
        stop.set()
        for t in threads:
            t.join(TIMEOUT)
    assert not errors, errors[:5]
    assert done[0] > 20, done


# -- SNI and Host ---------------------------------------------------------------------------
def test_sni_host_mismatch_stays_on_its_listener(sluice, backend, pki):
    """SNI picks a certificate, never routes: a request is routed by its Host among its
    own listener's routes, and client_auth is the listener's. A client of the open
    listener naming the guarded one's host (in SNI, Host or both) reaches the open
    listener's upstream only; a mismatch on one listener is served by Host."""
    from backends import free_port
    from daemon import servers_of
    guarded, public = backend(), backend()
    cfg = sluice.proxy_config(guarded)
    cfg["listeners"][0]["tls"] = {"certificates": [cert_entry(pki["site_ec"])],
                                  "client_auth": {"mode": "required",
                                                  "ca": pki["client_ca"]}}
    port2 = free_port("127.0.0.1")
    cfg["upstreams"]["pub"] = {"servers": servers_of([public])}
    cfg["listeners"].append({"address": "127.0.0.1:%d" % port2,
                             "routes": [{"upstream": "pub"}],
                             "tls": {"certificates": [cert_entry(pki["other"]),
                                                      cert_entry(pki["site_ec"])]}})
    sl = sluice.new()
    sl.start(cfg)
    for sni, host in (("site.test", "site.test"), ("other.test", "site.test"),
                      ("site.test", "other.test")):
        ts = tls_connect(port2, client_ctx(pki), sni=sni)
        c, r = get(ts, target="/%s/%s" % (sni, host), host=host)
        assert r.status == 200
        c.close()
    assert guarded.saw_nothing()
    assert len(public.requests) == 3
    # the guarded listener still wants its certificate, whatever the names
    ctx = client_ctx(pki, cert=pki["client"])
    ctx.check_hostname = False  # other.test is not on this listener: its default answers
    ts = tls_connect(sl.port, ctx, sni="other.test")
    c, r = get(ts, host="other.test")
    assert r.status == 200
    c.close()
    assert guarded.wait_requests(1)


# -- client certificate chains --------------------------------------------------------------
def test_client_auth_depth_counts_intermediates(sluice, backend, pki):
    """depth is the number of intermediate CAs allowed between a client certificate and
    the CA in client_auth.ca (OpenSSL's verify depth, nginx's ssl_verify_depth)."""
    d = pki["dir"]
    _leaf(d, "root", "cinter1", "cinter1", ca_ext=True)
    _leaf(d, "cinter1", "cinter2", "cinter2", ca_ext=True)
    one = _leaf(d, "cinter1", "bob", "bob", client=True)
    two = _leaf(d, "cinter2", "carol", "carol", client=True)

    def bundle(name, pair, *inters):
        path = os.path.join(d, name + "_bundle.pem")
        with open(path, "w") as f:
            f.write(open(pair[0]).read())
            for i in inters:
                f.write(open(os.path.join(d, i + ".pem")).read())
        return path, pair[1]
    bob = bundle("bob", one, "cinter1")
    carol = bundle("carol", two, "cinter2", "cinter1")
    for depth, ok in ((1, {"bob"}), (2, {"bob", "carol"})):
        b = backend()
        sl = tls_proxy(sluice, b, {"certificates": [cert_entry(pki["site_ec"])],
                                   "client_auth": {"mode": "required", "ca": pki["root"],
                                                   "depth": depth}})
        for name, cert in (("bob", bob), ("carol", carol)):
            status = _served(sl.port, client_ctx(pki, cert=cert), None)[1]
            assert (status == 200) == (name in ok), (depth, name, status)
        subjects = [q.header("x-client-subject") for q in b.requests]
        assert subjects == ["CN=" + n for n in sorted(ok)], subjects


# -- what a custom proxy's filter reads -----------------------------------------------------
@pytest.mark.parametrize("cert", [True, False])
def test_filter_reads_the_verified_identity_not_the_forged_one(sluice, backend, pki, cert):
    """A careless filter authorizing on sl_req_header("X-Client-Subject") runs before the
    head is built (where the client's copies are stripped): it must read what sluice
    verified, or nothing."""
    from daemon import servers_of
    from test_phase_api import PHASE_PROXY
    b = backend()
    s = sluice.new("phase")
    s.binary = PHASE_PROXY
    cfg = sluice.config([], {"default": {"servers": servers_of([b])}}, sl=s)
    cfg["listeners"][0].pop("routes", None)  # a custom proxy does not use routes
    cfg["listeners"][0]["tls"] = {"certificates": [cert_entry(pki["site_ec"])],
                                  "client_auth": {"mode": "optional", "ca": pki["client_ca"]}}
    s.start(cfg)
    want = {"X-Client-Subject": "CN=alice",
            "x_client_fingerprint": _fingerprint(pki["client"][0])}
    for name, verified in want.items():
        ts = tls_connect(s.port, client_ctx(pki, cert=pki["client"] if cert else None))
        c, r = get(ts, headers=[("X-Client-Subject", "CN=admin"),
                                ("X_Client_Fingerprint", "00" * 32), ("X-Echo", name)])
        assert r.status == 200
        c.close()
        assert b.wait_requests(1)
        req = b.requests.pop()
        assert req.headers_named("x-echoed") == [verified if cert else "(none)"], req.headers
