"""Command line: -V, --help, bad arguments, and -t config validation with FILE:LINE:COLUMN."""
import os
import re
import subprocess

import pytest

from env import SCALE, SLUICED

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(*args, timeout=10 * SCALE):
    assert os.path.exists(SLUICED), "sluiced not built: %s" % SLUICED
    p = subprocess.run([SLUICED] + list(args), capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def test_version_prints_one_line_and_exits_0():
    rc, out, err = run("-V")
    assert rc == 0, (out, err)
    lines = [ln for ln in (out + err).splitlines() if ln.strip()]
    assert len(lines) == 1, "expected one version line, got %r" % lines
    assert re.search(r"\d+\.\d+", lines[0]), lines[0]


def test_help_prints_usage_and_exits_0():
    rc, out, err = run("--help")
    assert rc == 0, (out, err)
    text = out + err
    assert "usage" in text.lower(), text
    assert "-c" in text and "-t" in text, text


@pytest.mark.parametrize("args", [["--no-such-option"], ["-c"], ["-Z"]],
                         ids=["unknown-long", "missing-argument", "unknown-short"])
def test_bad_arguments_exit_2(args):
    rc, out, err = run(*args)
    assert rc == 2, "sluiced %s -> %d (stdout %r, stderr %r)" % (" ".join(args), rc, out, err)


GOOD = """\
workers: 1
log:
  level: info
timeouts:
  client_header: 10s
limits:
  max_header_count: 100
listeners:
  - address: "127.0.0.1:18080"
    routes:
      - path: /healthz
        respond:
          status: 200
          body: "ok\\n"
      - upstream: u
upstreams:
  u:
    servers:
      - address: 127.0.0.1:9
        weight: 1
"""


def write(tmp_path, text, name="conf.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_t_accepts_a_valid_config(tmp_path):
    path = write(tmp_path, GOOD)
    rc, out, err = run("-t", "-c", path)
    assert rc == 0, err


def test_t_accepts_the_documented_example(tmp_path):
    """The example in docs/configuration.md is a valid config."""
    with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
        doc = f.read()
    m = re.search(r"```yaml\n(.*?)```", doc, re.S)
    assert m, "no yaml block in docs/configuration.md"
    path = write(tmp_path, m.group(1))
    rc, out, err = run("-t", "-c", path)
    assert rc == 0, err


def mutate(line_no, new, insert=False):
    lines = GOOD.splitlines()
    if insert:
        lines.insert(line_no - 1, new)
    else:
        lines[line_no - 1] = new
    return "\n".join(lines) + "\n"


# (id, config text, acceptable (line, column) pairs; column None = any)
BAD = [
    ("unknown-top-key", mutate(1, "workerz: 1"), [(1, 1)]),
    ("unknown-nested-key", mutate(5, "  client_headr: 10s"), [(5, 3)]),
    ("workers-not-a-number", mutate(1, "workers: lots"), [(1, 10), (1, 1)]),
    ("workers-out-of-range", mutate(1, "workers: 0"), [(1, 10), (1, 1)]),
    ("bad-log-level", mutate(3, "  level: loud"), [(3, 10), (3, 3)]),
    ("bad-duration", mutate(5, "  client_header: 10 parsecs"), [(5, 18), (5, 3)]),
    ("header-count-out-of-range", mutate(7, "  max_header_count: 257"), [(7, 21), (7, 3)]),
    ("bad-respond-status", mutate(13, "          status: 42"), [(13, 19), (13, 11)]),
    ("undefined-upstream", mutate(15, "      - upstream: nope"), [(15, 19), (15, 9)]),
    ("bad-server-address", mutate(19, "      - address: 127.0.0.1:notaport"),
     [(19, 18), (19, 9)]),
    ("weight-out-of-range", mutate(20, "        weight: 1001"), [(20, 17), (20, 9)]),
    ("route-with-upstream-and-respond", mutate(15, "        upstream: u", insert=True),
     [(11, None), (12, None), (15, None)]),
    ("yaml-tab-indent", mutate(5, "\tclient_header: 10s"), [(5, None), (4, None)]),
]


@pytest.mark.parametrize("text,where", [(t, w) for _, t, w in BAD], ids=[i for i, _, _ in BAD])
def test_t_rejects_with_file_line_column(tmp_path, text, where):
    path = write(tmp_path, text)
    rc, out, err = run("-t", "-c", path)
    assert rc == 1, "expected exit 1, got %d; stderr %r" % (rc, err)
    m = re.search(re.escape(path) + r":(\d+):(\d+): (\S.*)", err)
    assert m, "no '%s:LINE:COLUMN: reason' on stderr: %r" % (path, err)
    line, col = int(m.group(1)), int(m.group(2))
    assert any(line == wl and (wc is None or col == wc) for wl, wc in where), \
        "reported %d:%d, expected one of %r: %r" % (line, col, where, err)


def test_t_missing_file_exits_1(tmp_path):
    path = str(tmp_path / "nope.yaml")
    rc, out, err = run("-t", "-c", path)
    assert rc == 1, (rc, err)
    assert path in err, err


def test_run_with_invalid_config_refuses_to_start(tmp_path):
    path = write(tmp_path, mutate(1, "workerz: 1"))
    rc, out, err = run("-c", path)
    assert rc != 0, "sluiced started on an invalid config"
    assert "%s:1:1:" % path in err, err
