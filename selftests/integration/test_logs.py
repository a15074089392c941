"""Logs: the access log (one key=value line per request with the documented fields, flushed
within about a second and on exit) and the error log (key=value lines, level-gated)."""
import re
import signal

from backends import dead_address
from client import build_request
from daemon import wait_for
from env import SCALE

FIELDS = ["ts", "worker", "client", "method", "target", "status", "in", "out", "upstream",
          "upstream_time", "time"]
NUM = re.compile(r"^\d+(\.\d+)?$")


def test_access_log_fields(sluice, backend):
    b = backend("a")
    sl = sluice.start([{"path": "/health", "respond": {"status": 200, "body": "ok\n"}},
                       {"host": "sluice.test", "upstream": "u"}],
                      {"u": {"servers": [{"address": b.address}]}})
    c = sl.client()
    cport = c.sock.getsockname()[1]
    assert c.request("GET", "/page?q=1").status == 200
    assert c.request("POST", "/form", body=b"12345").status == 200
    assert c.request("GET", "/health").status == 200
    assert c.request("GET", "/", host="nowhere.test").status == 404
    entries = sl.wait_access(4, timeout=5 * SCALE)
    assert len(entries) == 4, "access log lines: %r" % sl.access_lines()
    for e, line in zip(entries, sl.access_lines()):
        missing = [f for f in FIELDS if f not in e]
        assert not missing, "fields %r missing in %r" % (missing, line)
        assert e["client"] == "127.0.0.1:%d" % cport, line
        assert e["worker"].isdigit(), line
        for f in ("in", "out"):
            assert e[f].isdigit(), line
        assert NUM.match(e["time"]), line
        assert e["ts"], line
    get, post, health, nf = entries
    assert (get["method"], get["target"], get["status"]) == ("GET", "/page?q=1", "200")
    assert get["upstream"] == b.address
    assert NUM.match(get["upstream_time"]), get
    assert int(get["out"]) > 0 and int(get["in"]) > 0
    assert (post["method"], post["target"], post["status"]) == ("POST", "/form", "200")
    assert int(post["in"]) >= 5, post
    assert (health["target"], health["status"], health["upstream"]) == ("/health", "200", "-")
    assert (nf["status"], nf["upstream"]) == ("404", "-")


def test_access_log_error_statuses(sluice, backend):
    sl = sluice.proxy(dead_address(), upstream={"retries": 0})
    c = sl.client()
    assert c.request("GET", "/x").status == 502
    c = sl.client()
    c.send(b"GARBAGE\r\n\r\n")
    assert c.read_response().status == 400
    entries = sl.wait_access(2, timeout=5 * SCALE)
    assert sorted(e.get("status") for e in entries) == ["400", "502"], sl.access_lines()


def test_access_log_flushed_on_exit(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b)
    assert sl.client().request("GET", "/last-words").status == 200
    sl.send_signal(signal.SIGTERM)
    assert sl.wait_exit(10 * SCALE) == 0
    assert any(e.get("target") == "/last-words" for e in sl.access_entries()), \
        sl.access_lines()


def test_access_log_one_line_per_pipelined_request(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, workers=2)
    c = sl.client()
    c.send(b"".join(build_request("GET", "/p%d" % i) for i in range(5)))
    c.read_responses(5)
    entries = sl.wait_access(5, timeout=5 * SCALE)
    assert [e.get("target") for e in entries] == ["/p%d" % i for i in range(5)]


ERROR_LINE = re.compile(r'^ts=\S+ level=(debug|info|warn|error) msg=("(?:[^"\\]|\\.)*"|\S+)'
                        r'( [A-Za-z_][A-Za-z0-9_.]*=("(?:[^"\\]|\\.)*"|\S*))*$')


def test_error_log_lines_are_key_value(sluice, backend):
    sl = sluice.proxy(dead_address(), upstream={"retries": 0})
    c = sl.client()
    assert c.request("GET", "/").status == 502  # an upstream failure is worth a line
    sl.send_signal(signal.SIGHUP)  # and so is a reload
    assert sl.wait_log(lambda ln: "reload" in ln), sl.stderr()
    sl.send_signal(signal.SIGTERM)
    assert sl.wait_exit(10 * SCALE) == 0
    lines = [ln for ln in sl.log_lines() if ln.strip()]
    assert lines, "nothing logged"
    bad = [ln for ln in lines if not ERROR_LINE.match(ln)]
    assert not bad, "error log lines not in 'ts=... level=... msg=... key=value' form:\n" + \
        "\n".join(bad[:10])


def test_error_log_level_gates_lines(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, log={"level": "error"})
    assert sl.client().request("GET", "/").status == 200
    sl.send_signal(signal.SIGHUP)
    sl.send_signal(signal.SIGTERM)
    assert sl.wait_exit(10 * SCALE) == 0
    noisy = [ln for ln in sl.log_lines() if re.search(r"\blevel=(debug|info|warn)\b", ln)]
    assert not noisy, "lines below level error were logged: %r" % noisy


def test_error_log_to_file(sluice, backend, tmp_path):
    b = backend("a")
    path = str(tmp_path / "error.log")
    sl = sluice.proxy(b, log={"error_log": path})
    assert sl.client().request("GET", "/").status == 200
    sl.write_config("workers: [\n")  # invalid YAML
    sl.send_signal(signal.SIGHUP)

    def logged():
        try:
            with open(path) as f:
                return [ln for ln in f if "reload" in ln and sl.config_path + ":" in ln]
        except FileNotFoundError:
            return []
    assert wait_for(logged, 5 * SCALE), "reload failure not in %s" % path
    assert sl.client().request("GET", "/").status == 200


def test_access_log_to_stdout(sluice, backend):
    b = backend("a")
    sl = sluice.proxy(b, log={"access_log": "stdout"})
    assert sl.client().request("GET", "/to-stdout").status == 200
    assert wait_for(lambda: "target=/to-stdout" in sl.stdout(), 5 * SCALE), sl.stdout()
