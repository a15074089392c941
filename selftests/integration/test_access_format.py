"""log.access_log_format: a $variable template or JSON; host, user agent, referer, request
id (kept from X-Request-Id or generated, forwarded with forwarded.x_request_id), servers
tried, upstream times that are right for timeouts; hostile header bytes stay escaped and
bounded; unknown variables are config errors with FILE:LINE:COL."""
import json
import os
import re
import subprocess

import pytest

from backends import dead_address
from client import build_request
from daemon import wait_for
from env import SCALE, SLUICED

HEX32 = re.compile(r"^[0-9a-f]{32}$")
TEMPLATE = ("host=$host ua=$user_agent ref=$referer id=$request_id tried=$upstream_tried "
            "up=$upstream ct=$upstream_connect_time ht=$upstream_header_time "
            "ut=$upstream_time rt=$request_time st=$status")


def start(sluice, *backends, fmt=TEMPLATE, upstream=None, **kw):
    sl = sluice.new()
    log = dict(kw.pop("log", {}))
    log.update({"level": "info", "error_log": "stderr",
                "access_log": sl.access_log, "access_log_format": fmt})
    cfg = sluice.proxy_config(*backends, upstream=upstream, sl=sl, log=log, **kw)
    return sl.start(cfg)


def kv(line):
    from daemon import parse_kv
    return parse_kv(line)


def test_template_fields(sluice, backend):
    b = backend("a")
    sl = start(sluice, b)
    r = sl.client().request("GET", "/p", host="shop.test:8443",
                            headers=[("User-Agent", "curl/8.0 (x)"),
                                     ("Referer", "http://r.test/a b")])
    assert r.status == 200
    e = kv(sl.wait_access(1)[0] and sl.access_lines()[0])
    assert e["host"] == "shop.test", e
    assert e["ua"] == "curl/8.0 (x)", e
    assert e["ref"] == "http://r.test/a b", e
    assert HEX32.match(e["id"]), e
    assert e["tried"] == b.address and e["up"] == b.address, e
    for k in ("ct", "ht", "ut", "rt"):
        assert re.match(r"^\d+\.\d{3}$", e[k]), (k, e)
    assert e["st"] == "200"


def test_tried_lists_every_server_in_order(sluice, backend):
    dead = dead_address()
    b = backend("a")
    sl = start(sluice, dead, b, upstream={"retries": 1})
    # round robin may start on either server: ask until one request had to retry
    for _ in range(4):
        assert sl.client().request("GET", "/").status == 200
    sl.wait_access(4)
    tried = [kv(ln)["tried"] for ln in sl.access_lines()]
    assert "%s,%s" % (dead, b.address) in tried, tried
    assert all(t in (b.address, "%s,%s" % (dead, b.address)) for t in tried), tried


def test_no_upstream_prints_dash(sluice):
    sl = sluice.new()
    sl.start(sluice.config([{"respond": {"status": 200}}], sl=sl, log={
        "level": "info", "error_log": "stderr", "access_log": sl.access_log,
        "access_log_format": TEMPLATE}))
    sl.client().request("GET", "/")
    e = kv(sl.wait_access(1) and sl.access_lines()[0])
    assert (e["tried"], e["up"], e["ct"], e["ht"], e["ut"]) == ("-",) * 5, e
    assert e["ua"] == "-" and e["ref"] == "-"


def test_upstream_time_of_a_504_is_the_wait(sluice, backend):
    """The response-header timeout: 504 after 2 s logs upstream_time ~2.000 (it logged
    0.000 before)."""
    b = backend("a")
    sl = start(sluice, b, timeouts={"upstream_response_header": "2s"})
    r = sl.client(timeout=10 * SCALE).request("GET", "/_/hold?s=%d" % (6 * SCALE))
    assert r.status == 504, r
    b.release.set()
    e = kv(sl.wait_access(1) and sl.access_lines()[0])
    assert e["st"] == "504"
    assert e["ht"] == "-", e  # no response head ever came
    # ~2.000: the timer runs on the loop's cached clock, a millisecond either way
    assert 1.9 <= float(e["ut"]) < 2.0 + 5 * SCALE, e
    assert float(e["rt"]) >= float(e["ut"])


def test_json_lines_parse_and_hostile_bytes_stay_escaped(sluice, backend):
    b = backend("a")
    sl = start(sluice, b, fmt="json")
    ua = b'evil "quoted" \\ back \xff\xfe} end'
    c = sl.client()
    c.send(build_request("GET", "/j?x=%22y", headers=[("User-Agent", ua.decode("latin-1")),
                                                      ("X-Request-Id", "abc-123")]))
    assert c.read_response().status == 200
    c.send(build_request("GET", "/long", headers=[("User-Agent", "U" * 20000)]))
    assert c.read_response().status in (200, 431)
    # a control byte: refused by the parser, and its line is still one valid object
    c2 = sl.client()
    c2.send(b"GET /\x01\"x HTTP/1.1\r\nHost: a\r\nUser-Agent: a\x01b\r\n\r\n")
    assert c2.read_response().status == 400
    sl.wait_access(3)
    raw_lines = [ln for ln in open(sl.access_log, "rb").read().split(b"\n") if ln]
    assert len(raw_lines) == 3, raw_lines
    for ln in raw_lines:
        assert len(ln) < 4096, len(ln)
        assert all(0x20 <= ch < 0x7f for ch in ln), ln  # ASCII, no raw control bytes
    objs = [json.loads(ln) for ln in raw_lines]
    first = objs[0]
    assert first["user_agent"] == ua.decode("latin-1"), first
    assert first["target"] == "/j?x=%22y"
    assert first["status"] == 200 and first["worker"] == 0
    assert first["upstream"] == b.address and first["upstream_tried"] == b.address
    assert isinstance(first["request_time"], float)
    assert HEX32.match(first["request_id"]), first  # off: the client's id is not kept
    assert set(first) == set(objs[2]), "every line carries every key"
    if objs[1]["status"] == 200:
        assert objs[1]["user_agent"].endswith("..."), objs[1]["user_agent"][-10:]
    bad = objs[2]
    assert bad["status"] == 400 and bad["upstream"] is None, bad


def test_request_id_keep_forwards_a_good_incoming_id(sluice, backend):
    b = backend("a")
    sl = start(sluice, b, forwarded={"x_request_id": "keep"})
    c = sl.client()
    r = c.request("GET", "/1", headers=[("X-Request-Id", "req-42.a:b_c")])
    assert r.json()["headers"] and b.requests[-1].header("X-Request-Id") == "req-42.a:b_c"
    # a hostile one is replaced, not forwarded
    c.request("GET", "/2", headers=[("X-Request-Id", "x\" y=z")])
    fwd = b.requests[-1].headers_named("X-Request-Id")
    assert len(fwd) == 1 and HEX32.match(fwd[0]), fwd
    c.request("GET", "/3")
    gen = b.requests[-1].header("X-Request-Id")
    assert HEX32.match(gen) and gen != fwd[0]
    ids = [kv(ln)["id"] for ln in (sl.wait_access(3) and sl.access_lines())]
    assert ids == ["req-42.a:b_c", fwd[0], gen], ids


def test_request_id_generate_replaces_the_clients(sluice, backend):
    b = backend("a")
    sl = start(sluice, b, forwarded={"x_request_id": "generate"})
    sl.client().request("GET", "/", headers=[("X-Request-Id", "client-chosen")])
    fwd = b.requests[-1].headers_named("X-Request-Id")
    assert len(fwd) == 1 and HEX32.match(fwd[0]), fwd


def test_request_id_off_adds_nothing(sluice, backend):
    b = backend("a")
    sl = start(sluice, b)
    sl.client().request("GET", "/")
    assert b.requests[-1].header("X-Request-Id") is None


def test_dollar_and_braces(sluice, backend):
    b = backend("a")
    sl = start(sluice, b, fmt="cost=$$5 s=${status}x")
    sl.client().request("GET", "/")
    assert (sl.wait_access(1) and sl.access_lines()[0]) == "cost=$5 s=200x"


@pytest.mark.parametrize("fmt,why", [
    ("a=$nosuch", "unknown variable $nosuch"),
    ("a=$", "not followed by a variable name"),
    ("a=${status", "not followed by a variable name"),
    ("a=\\tb", None),
])
def test_bad_format_is_a_config_error(tmp_path, fmt, why):
    p = os.path.join(str(tmp_path), "c.yaml")
    with open(p, "w") as f:
        f.write('log:\n  access_log_format: "%s"\nlisteners:\n  - address: "127.0.0.1:1"\n'
                % fmt)
    r = subprocess.run([SLUICED, "-t", "-c", p], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1, r
    assert re.search(re.escape(p) + r":2:\d+", r.stderr), r.stderr
    assert (why or "control character") in r.stderr, r.stderr


def test_bad_request_id_mode_is_a_config_error(tmp_path):
    p = os.path.join(str(tmp_path), "c.yaml")
    with open(p, "w") as f:
        f.write('forwarded:\n  x_request_id: sometimes\nlisteners:\n  - address: "127.0.0.1:1"\n')
    r = subprocess.run([SLUICED, "-t", "-c", p], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and ":2:" in r.stderr and "off, keep or generate" in r.stderr, r
