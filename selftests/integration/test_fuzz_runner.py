"""The fuzz smoke runs of `make test`: a target that dies must say why and leave what
libFuzzer wrote for it, and the admin API harness must not die of a signal the daemon
ignores (a SIGPIPE from evhttp replying to a closed client killed it with no reproducer
and no final stats)."""
import importlib.util
import os
import shutil
import signal
import subprocess
import time

import pytest

from env import BUILD

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def runner():
    spec = importlib.util.spec_from_file_location(
        "run_tests", os.path.join(ROOT, "tools", "run-tests.py"))
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def fake_target(tmp_path, body):
    p = tmp_path / "fuzz_fake"
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return str(p)


def test_fuzz_admin_survives_sigpipe(tmp_path):
    b = os.path.join(BUILD, "fuzz", "fuzz_admin")
    if not os.path.exists(b):
        pytest.skip("fuzz targets not built (make fuzz-build)")
    corpus = tmp_path / "corpus"
    shutil.copytree(os.path.join(ROOT, "selftests", "fuzz", "corpus", "admin"), corpus)
    err = open(tmp_path / "err", "w+")
    p = subprocess.Popen([b, "-max_total_time=60", "-artifact_prefix=%s/" % tmp_path,
                          str(corpus)], cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                         stdout=err, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while "INITED" not in open(tmp_path / "err").read():
            assert p.poll() is None, open(tmp_path / "err").read()[-2000:]
            assert time.monotonic() < deadline, "libFuzzer never finished its corpus"
            time.sleep(0.1)
        for _ in range(3):
            p.send_signal(signal.SIGPIPE)
            time.sleep(0.3)
        assert p.poll() is None, "fuzz_admin died of SIGPIPE (rc %s)" % p.returncode
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        err.close()


def test_runner_names_a_signal_libfuzzer_does_not_catch(tmp_path):
    b = fake_target(tmp_path, "echo '#2 INITED'\nkill -PIPE $$\n")
    ok, execs, report = runner().fuzz_one(b, str(tmp_path / "none"), 1,
                                          str(tmp_path / "keep"))
    assert not ok and execs == "?"
    assert "fuzz_fake was killed by SIGPIPE" in report
    assert "no reproducer and no final stats" in report
    assert "fuzz_fake left no reproducer" in report


def test_runner_keeps_an_oom_reproducer(tmp_path):
    b = fake_target(tmp_path, """for a; do case "$a" in -artifact_prefix=*) pre=${a#*=};; esac; done
printf 'input' > "${pre}oom-0123abcd"
echo '==7== ERROR: libFuzzer: out-of-memory (used: 2100Mb; exceeds: 2048Mb)' >&2
exit 1
""")
    keep = tmp_path / "keep"
    ok, _, report = runner().fuzz_one(b, str(tmp_path / "none"), 1, str(keep))
    assert not ok
    assert "exited 1: ERROR: libFuzzer: out-of-memory" in report
    kept = keep / "fuzz_fake-oom-0123abcd"
    assert kept.read_bytes() == b"input"
    assert "reproducer kept in %s" % kept in report


def test_runner_passes_a_clean_run(tmp_path):
    b = fake_target(tmp_path, "echo 'stat::number_of_executed_units: 42'\nexit 0\n")
    assert runner().fuzz_one(b, str(tmp_path / "none"), 1, str(tmp_path / "k")) == \
        (True, "42", "")
