"""Start-up and reload hardening: failures that used to be silent are logged, hostile
config files are rejected quickly with FILE:LINE:COLUMN, and a rejected reload leaves the
old config serving."""
import os
import socket
import subprocess
import tempfile

from client import HTTPClient
from daemon import wait_for
from env import SCALE, SLUICED, TIMEOUT


def test_unpinnable_steering_program_is_logged_and_steering_stays_on(sluice, backend):
    """bpf_program__pin's result was ignored: a pin that cannot be made (here a directory
    sits where the program's pin goes) is now one warning line; steering still runs."""
    b = backend("a")
    sl = sluice.new()
    sl.write_config(sluice.proxy_config(b, sl=sl, workers=2))
    os.makedirs(os.path.join(sl.pin_path, "steer_prog", "occupied"))
    sl.start()
    assert sl.wait_log(lambda ln: 'msg="steering on"' in ln), sl.stderr()
    line = sl.wait_log(lambda ln: 'msg="cannot pin the steering program"' in ln)
    assert line and "steer_prog" in line, sl.stderr()
    with sl.client() as c:
        assert c.request("GET", "/").status == 200


def deep_config(levels):
    """A config whose listeners value is a flow sequence nested `levels` deep."""
    return "listeners: " + "[" * levels + "]" * levels + "\n"


def test_t_rejects_deep_nesting_at_once(tmp_path):
    """100,000 levels took over a minute to reject; now the 64th nested sequence is named
    as FILE:LINE:COLUMN straight away (the timeout only guards against a hang)."""
    path = str(tmp_path / "deep.yaml")
    with open(path, "w") as f:
        f.write(deep_config(100000))
    p = subprocess.run([SLUICED, "-t", "-c", path], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=10 * SCALE)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stderr.strip() == \
        "%s:1:75: nested deeper than 64 levels of mappings and sequences" % path, p.stderr


def admin_request(path, method, target, timeout):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    with HTTPClient(0, sock=s, timeout=timeout) as c:
        return c.request(method, target, host="localhost")


def served_body(sl):
    with HTTPClient(sl.port, timeout=TIMEOUT) as c:
        r = c.request("GET", "/")
    assert r.status == 200, r
    return r.body


def test_admin_reload_of_deep_config_fails_fast_and_old_config_serves(sluice, tmp_path):
    sock = os.path.join(str(tmp_path), "admin.sock")
    if len(sock) > 100:  # sun_path
        sock = os.path.join(tempfile.mkdtemp(prefix="sl-adm-"), "admin.sock")
    sl = sluice.new()
    good = sluice.config([{"respond": {"status": 200, "body": "old\n"}}], sl=sl,
                         admin={"socket": sock})
    sl.start(good)
    assert wait_for(lambda: os.path.exists(sock), 5 * SCALE), sl.stderr()
    keep = sl.client()
    assert keep.request("GET", "/").body == b"old\n"
    sl.write_config(deep_config(60000))
    # 60,000 levels blocked the admin API for 11 s: the answer must come well within the
    # client's timeout, and it names the file, line and column
    r = admin_request(sock, "POST", "/reload", timeout=TIMEOUT)
    assert r.status == 400, r
    err = r.json()["error"]
    assert err == "%s:1:75: nested deeper than 64 levels of mappings and sequences" % \
        sl.config_path, err
    assert sl.wait_log(lambda ln: "reload rejected" in ln and "nested deeper" in ln)
    # the old config keeps serving, on the kept-alive connection and on new ones
    assert keep.request("GET", "/").body == b"old\n"
    assert served_body(sl) == b"old\n"
    st = admin_request(sock, "GET", "/status", timeout=TIMEOUT).json()
    assert st["reloads"] == 0 and st["last_reload_error"] == err


def big_head_headers(total):
    """Request headers of about `total` bytes, in 1,000-byte values (well under the
    header count limit)."""
    return [("X-Fill-%d" % i, "v" * 1000) for i in range(total // 1000)]


def test_reload_raising_max_header_bytes_takes_effect(sluice, backend):
    """The big buffer class was sized once at start, so a reload that raised
    limits.max_header_bytes was silently capped at the old size: a 40 KiB head got 431
    after raising the limit from 16k to 64k. Workers now grow the class when they switch."""
    b = backend("a")
    sl = sluice.new()
    sl.start(sluice.proxy_config(b, sl=sl, workers=2, limits={"max_header_bytes": "16k"}))
    with sl.client() as c:
        assert c.request("GET", "/", headers=big_head_headers(40000)).status == 431
    old = sl.client()  # a kept-alive connection from before the reload
    assert old.request("GET", "/").status == 200
    sl.reload(sluice.proxy_config(b, sl=sl, workers=2, limits={"max_header_bytes": "64k"}))
    assert sl.wait_log(lambda ln: 'msg="config reloaded"' in ln), sl.stderr()

    def big_ok():
        with sl.client() as c:
            return c.request("GET", "/big", headers=big_head_headers(40000)).status == 200
    # every worker switched: several new connections (spread over both workers) all pass
    assert wait_for(big_ok, 5 * SCALE), sl.stderr()[-2000:]
    for _ in range(6):
        assert big_ok()
    assert old.request("GET", "/again", headers=big_head_headers(40000)).status == 200
    assert b.wait_requests(3)
    got = [r for r in b.requests if r.path == "/big"]
    assert got and all(len(r.header("X-Fill-39")) == 1000 for r in got)
    # a head over the new limit is still refused
    with sl.client() as c:
        assert c.request("GET", "/", headers=big_head_headers(70000)).status == 431
